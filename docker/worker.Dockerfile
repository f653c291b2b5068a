# LoopReg RQ worker: CUDA + torch base image; one container per GPU.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY loopreg ./loopreg
COPY service ./service
COPY worker ./worker
COPY model_store ./model_store
# torch comes from the base image (CUDA build); everything else from pyproject.toml.
RUN pip install . boto3

ENV LOOPREG_STORAGE=/data LOOPREG_MODEL_STORE=/app/model_store LOOPREG_CACHE_DIR=/tmp/loopreg-cache
CMD ["python", "-m", "worker.main"]
