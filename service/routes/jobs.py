"""POST /register and the /jobs/{id} resource."""

from __future__ import annotations

import json
import uuid
from typing import Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from rq.job import Job

from service import jobs as q
from service.deps import ApiKey, QueueDep, RedisDep, SettingsDep, StorageDep
from service.errors import Problem, problems
from service.options import parse_options
from service.schemas import JobCreated, JobView, Progress, links
from service.sniff import SniffError, extension, sniff_head
from service.storage import NotStored, job_prefix, output_key, scan_key
from service.upload import receive_upload, storage_call

router = APIRouter(tags=["jobs"])
MEDIA = {"json": "application/json", "obj": "model/obj", "ply": "application/octet-stream",
         "glb": "model/gltf-binary", "png": "image/png"}  # fmt: skip
_FORM = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["scan"],
                "properties": {
                    "scan": {
                        "type": "string",
                        "format": "binary",
                        "description": ".ply .obj .stl .off .glb .xyz .npy",
                    },
                    "units": {"type": "string", "enum": ["auto", "m", "cm", "mm"], "default": "auto"},
                    "up": {
                        "type": "string",
                        "enum": ["auto", "x", "y", "z", "-x", "-y", "-z"],
                        "default": "auto",
                    },
                    "offsets": {"type": "boolean", "default": False},
                    "model": {"type": "string", "description": "body model name (default: the free model)"},
                    "device": {"type": "string", "enum": ["auto", "cpu", "cuda"], "default": "auto"},
                },
            }
        }
    },
    "required": True,
}


def _known_models() -> list[str]:
    """Manifest names, read without importing torch (the API image has no CUDA stack)."""
    from loopreg.paths import MODEL_STORE

    manifest = MODEL_STORE / "manifest.json"
    return sorted(json.loads(manifest.read_text())["models"]) if manifest.exists() else []


@router.post(
    "/register",
    status_code=202,
    response_model=JobCreated,
    summary="Upload a scan and queue its registration",
    openapi_extra={"requestBody": _FORM},
    responses=problems(400, 401, 413, 415, 422, 503),
)
async def register(
    request: Request, settings: SettingsDep, storage: StorageDep, queue: QueueDep, _: ApiKey
) -> JSONResponse:
    metrics = request.app.state.metrics
    job_id = uuid.uuid4().hex

    def check_extension(filename: str | None) -> str:
        try:
            return extension(filename)
        except SniffError as exc:
            metrics.uploads.labels(f"rejected_{exc.status}").inc()
            raise Problem(exc.status, exc.detail, "unsupported-format") from None

    def check_header(head: bytes, size: int, ext: str) -> None:
        try:
            sniff_head(bytes(head), size, ext, settings.max_scan_points)
        except SniffError as exc:
            metrics.uploads.labels(f"rejected_{exc.status}").inc()
            raise Problem(exc.status, exc.detail, "malformed-scan") from None

    if storage.streams_uploads:  # S3: stream the scan into the bucket as it arrives
        ext_box: list[str] = []

        def sink_for(filename: str):
            ext_box.append(check_extension(filename))
            return storage.open_upload(scan_key(job_id, ext_box[0]))

        upload = await receive_upload(request, "scan", None, settings.max_upload_bytes, sink_for)
        try:
            check_header(upload.head, upload.size, ext_box[0])
            options = parse_options(upload.fields, _known_models())
            await storage_call(upload.sink.commit())
        except BaseException:
            with anyio.CancelScope(shield=True):
                await upload.sink.abort()
            raise
        try:
            q.enqueue(queue, settings, job_id, scan_key(job_id, ext_box[0]), options)
        except BaseException:
            storage.delete_prefix(job_prefix(job_id))
            raise
    else:  # a directory: stage the file, check it, then move it into storage
        upload = await receive_upload(
            request, "scan", settings.spool_dir, settings.max_upload_bytes, on_filename=check_extension
        )
        try:
            ext = extension(upload.filename)  # checked by on_filename already
            check_header(upload.head, upload.size, ext)
            options = parse_options(upload.fields, _known_models())
            key = scan_key(job_id, ext)
            storage.adopt_file(key, upload.path)
            try:
                q.enqueue(queue, settings, job_id, key, options)
            except BaseException:  # e.g. Redis down (503): no orphaned scan in storage
                storage.delete_prefix(job_prefix(job_id))
                raise
        finally:
            upload.discard()
    metrics.uploads.labels("accepted").inc()
    metrics.upload_bytes.inc(upload.size)
    body = JobCreated(id=job_id, status="queued", links=links(job_id))
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": f"/jobs/{job_id}"})


def _job(redis, job_id: str) -> Job:
    job = q.fetch(redis, job_id)
    if job is None:
        raise Problem(404, f"no job {job_id!r}; it never existed or its record expired", "no-such-job")
    return job


def _view(job: Job) -> JobView:
    status = q.public_status(job)
    progress = job.meta.get("progress") or {"stage": status, "fraction": 0.0}
    if status == "finished":
        progress = {"stage": "done", "fraction": 1.0}
    return JobView(
        id=job.id,
        status=status,
        progress=Progress(**progress),
        created_at=q.iso(job.created_at),
        started_at=q.iso(job.started_at),
        ended_at=q.iso(job.ended_at),
        error=q.error_message(job, status),
        links=links(job.id),
    )


@router.get("/jobs/{job_id}", response_model=JobView, responses=problems(401, 404))
def get_job(job_id: str, redis: RedisDep, _: ApiKey) -> JobView:
    return _view(_job(redis, job_id))


def _finished(redis, job_id: str) -> Job:
    job = _job(redis, job_id)
    status = q.public_status(job)
    if status != "finished":
        hint = q.error_message(job, status) if status in ("failed", "canceled") else f"poll /jobs/{job_id}"
        raise Problem(409, f"job {job_id} is {status}, not finished; {hint}", "job-not-finished")
    return job


def _stream(storage, job_id: str, name: str, missing: str) -> StreamingResponse:
    try:
        chunks = storage.iter_bytes(output_key(job_id, name))
    except NotStored:
        raise Problem(404, missing, "output-missing") from None
    media = MEDIA[name.rsplit(".", 1)[-1]]
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(chunks, media_type=media, headers=headers)


_GONE = "the job's files were deleted or have expired; submit the scan again"


@router.get("/jobs/{job_id}/result", responses=problems(401, 404, 409))
def get_result(job_id: str, redis: RedisDep, storage: StorageDep, _: ApiKey) -> StreamingResponse:
    """params.json: body model parameters and the model-to-scan transform."""
    _finished(redis, job_id)
    return _stream(storage, job_id, "params.json", _GONE)


@router.get("/jobs/{job_id}/report", responses=problems(401, 404, 409))
def get_report(job_id: str, redis: RedisDep, storage: StorageDep, _: ApiKey) -> StreamingResponse:
    """report.json: scan-to-body distances, timings, device."""
    _finished(redis, job_id)
    return _stream(storage, job_id, "report.json", _GONE)


@router.get("/jobs/{job_id}/preview", responses=problems(401, 404, 409))
def get_preview(job_id: str, redis: RedisDep, storage: StorageDep, _: ApiKey) -> StreamingResponse:
    """preview.png: a rendering of the fitted body."""
    _finished(redis, job_id)
    return _stream(storage, job_id, "preview.png", _GONE)


@router.get("/jobs/{job_id}/mesh", responses=problems(401, 404, 409, 422))
def get_mesh(
    job_id: str,
    redis: RedisDep,
    storage: StorageDep,
    _: ApiKey,
    kind: Literal["body", "body_offsets", "scan_parts"] = Query("body"),
    format: Literal["obj", "ply", "glb"] = Query("obj"),
) -> StreamingResponse:
    """A mesh in the scan's own frame and units."""
    job = _finished(redis, job_id)
    missing = _GONE
    if kind == "body_offsets" and not (job.meta.get("options") or {}).get("offsets"):
        missing = "this job ran without offsets; submit the scan again with offsets=true"
    elif any(storage.exists(output_key(job_id, f"{kind}.{f}")) for f in ("obj", "ply", "glb")):
        missing = f"{kind} is not available as {format} for this job; try format=ply or format=obj"
    elif storage.exists(output_key(job_id, "params.json")):
        missing = f"this job produced no {kind} mesh (the pipeline that ran does not write it)"
    return _stream(storage, job_id, f"{kind}.{format}", missing)


@router.delete("/jobs/{job_id}", response_model=JobView, responses=problems(401, 404))
def delete_job(
    job_id: str, redis: RedisDep, storage: StorageDep, settings: SettingsDep, _: ApiKey
) -> JobView:
    """Cancel the job if queued or running, and delete its stored files."""
    job = _job(redis, job_id)
    q.request_cancel(redis, job, settings.failure_ttl_s)
    storage.delete_prefix(job_prefix(job_id))
    job.refresh()
    return _view(job)
