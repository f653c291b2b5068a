# LoopReg HTTP API: light image (no torch/CUDA; the API never imports the science code).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN pip install "fastapi>=0.110" "uvicorn[standard]>=0.29" "python-multipart>=0.0.9" "pydantic-settings>=2.2" \
        "redis>=5.0" "rq>=1.16" "prometheus_client>=0.20" "boto3>=1.34"
COPY pyproject.toml README.md ./
COPY loopreg ./loopreg
COPY service ./service
COPY worker ./worker
COPY model_store/manifest.json ./model_store/manifest.json
RUN pip install --no-deps .

ENV LOOPREG_STORAGE=/data LOOPREG_MODEL_STORE=/app/model_store
EXPOSE 8000
CMD ["python", "-m", "service"]
