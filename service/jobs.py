"""Queue side of jobs: enqueue, read status, cancel. Shared names with the worker."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.settings import Settings

JOB_FUNC = "worker.jobs.register_job"
CANCEL_KEY = "loopreg:cancel:{}"
_JOB_ID = re.compile(r"[0-9A-Za-z]{1,64}")
OUTPUTS = {
    "params": "params.json",
    "report": "report.json",
    "preview": "preview.png",
}
MESH_KINDS = {"body": "body", "body_offsets": "body_offsets", "scan_parts": "scan_parts"}
MESH_FORMATS = ("obj", "ply", "glb")
_STATUS = {
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",  # waiting for a retry after backoff
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "canceled",
    JobStatus.CANCELED: "canceled",
}


def get_queue(settings: Settings, connection: Redis) -> Queue:
    return Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)


def enqueue(queue: Queue, settings: Settings, job_id: str, scan_key: str, options: dict[str, Any]) -> Job:
    retry = None
    if settings.retries > 0:
        retry = Retry(max=settings.retries, interval=settings.retry_backoff_s or 0)
    return queue.enqueue(
        JOB_FUNC,
        args=(job_id, scan_key, options),
        job_id=job_id,
        job_timeout=settings.job_timeout_s,
        result_ttl=settings.result_ttl_s,
        failure_ttl=settings.failure_ttl_s,
        ttl=None,
        retry=retry,
        meta={"progress": {"stage": "queued", "fraction": 0.0}, "options": options},
        description=f"register {scan_key}",
    )


def fetch(connection: Redis, job_id: str) -> Job | None:
    if not _JOB_ID.fullmatch(job_id):  # ASCII only: str.isalnum() accepts letters rq refuses
        return None
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except (NoSuchJobError, ValueError):
        return None


def public_status(job: Job) -> str:
    status = _STATUS.get(job.get_status(refresh=False), "queued")
    if status != "finished" and (
        job.meta.get("canceled") or job.connection.exists(CANCEL_KEY.format(job.id))
    ):
        return "canceled"
    return status


def error_message(job: Job, status: str) -> str | None:
    if status == "canceled":
        return "canceled on request"
    if status != "failed":
        return None
    if job.meta.get("error"):
        return str(job.meta["error"])
    result = job.latest_result()
    exc = (result.exc_string if result is not None else None) or ""
    if "AbandonedJobError" in exc:
        return "the worker running this job died (killed or out of memory) and no retries were left; resubmit"
    if "JobTimeoutException" in exc:
        return (
            f"the job ran longer than its time limit of {job.timeout} s; try a smaller scan or a GPU worker"
        )
    last = exc.strip().splitlines()[-1] if exc.strip() else "unknown error"
    return f"the worker failed: {last}"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def request_cancel(connection: Redis, job: Job, ttl_s: int) -> str:
    """Cancel a queued job now; ask a running one to stop at its next progress report."""
    status = public_status(job)
    if status in ("finished", "failed", "canceled"):
        return status
    connection.set(CANCEL_KEY.format(job.id), 1, ex=ttl_s)
    job.meta["canceled"] = True
    job.save_meta()
    if status == "queued":
        job.cancel()
    return status
