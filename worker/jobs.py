"""The job function run by workers: fetch the scan from storage, register it, store the outputs."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import get_current_job
from rq.job import Job

from service.jobs import CANCEL_KEY
from service.metrics import record_job_duration
from service.settings import Settings, get_settings
from service.storage import NotStored, Storage, job_prefix, make_storage, output_key
from worker.formats import add_formats
from worker.pipeline import Pipeline, load_pipeline

log = logging.getLogger("loopreg.worker")
SAVE_EVERY_S = 0.5


class JobCanceled(Exception):
    """Raised from the progress callback when the job was canceled through the API."""


class JobFailed(Exception):
    """A failure that retrying cannot fix (bad scan, bad option); its message is shown to the user."""


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    storage: Storage
    pipeline: Pipeline
    pipeline_name: str


_runtime: Runtime | None = None


def init_runtime(settings: Settings | None = None) -> Runtime:
    """Load settings, storage and the pipeline once per worker process."""
    global _runtime
    if _runtime is None:
        settings = settings or get_settings()
        pipeline, name = load_pipeline(settings.pipeline)
        _runtime = Runtime(
            settings, Redis.from_url(settings.redis_url), make_storage(settings), pipeline, name
        )
        log.info("pipeline: %s", name)
    return _runtime


class Progress:
    """The pipeline's progress callback: writes (stage, fraction) to job.meta and checks for cancellation."""

    def __init__(self, job: Job, rt: Runtime):
        self.job, self.rt = job, rt
        self._stage, self._saved = "", 0.0

    def canceled(self) -> bool:
        return bool(self.rt.redis.exists(CANCEL_KEY.format(self.job.id)))

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage != self._stage or now - self._saved > SAVE_EVERY_S or fraction >= 1.0:
            if self.canceled():
                raise JobCanceled(f"job {self.job.id} was canceled")
            self.job.meta["progress"] = {
                "stage": stage,
                "fraction": round(float(min(max(fraction, 0), 1)), 4),
            }
            self.job.save_meta()
            self._stage, self._saved = stage, now
        if self.rt.settings.stage_delay_s:
            time.sleep(self.rt.settings.stage_delay_s)


def _no_retry(job: Job, message: str, canceled: bool = False) -> None:
    job.retries_left = 0  # rq reads this when the job raises: deterministic failures are not retried
    job.meta["error"] = None if canceled else message
    job.meta["canceled"] = canceled or job.meta.get("canceled", False)
    job.save_meta()


def register_job(job_id: str, scan_key: str, options: dict) -> dict:
    """rq job: the scan is at `scan_key` in storage; outputs go to jobs/<id>/out/."""
    rt = init_runtime()
    job = get_current_job()
    assert job is not None
    progress = Progress(job, rt)
    job.meta["attempt"] = int(job.meta.get("attempt", 0)) + 1
    job.meta["error"] = None
    job.meta["pipeline"] = rt.pipeline_name
    started, outcome = time.monotonic(), "failed"
    try:
        result = _run(job, rt, progress, job_id, scan_key, options)
        outcome = "finished"
        return result
    except JobCanceled:
        outcome = "canceled"
        raise
    finally:  # also on a timeout (rq's JobTimeoutException passes through here)
        try:
            record_job_duration(rt.redis, job.origin, outcome, time.monotonic() - started)
        except Exception:
            log.warning("could not record the duration of job %s", job_id, exc_info=True)


def _run(job: Job, rt: Runtime, progress: Progress, job_id: str, scan_key: str, options: dict) -> dict:
    try:
        progress("download", 0.0)
        with tempfile.TemporaryDirectory(prefix=f"loopreg-{job_id}-") as tmp:
            scan = Path(tmp) / Path(scan_key).name
            try:
                rt.storage.get_file(scan_key, scan)
            except NotStored:
                raise JobFailed(
                    "the uploaded scan is no longer in storage (deleted?); submit it again"
                ) from None
            out = Path(tmp) / "out"
            try:
                summary = rt.pipeline(scan, out, {**options, "threads": rt.settings.threads}, progress)
            except (ValueError, FileNotFoundError) as exc:  # bad scan or option: retrying will not help
                raise JobFailed(str(exc)) from exc
            add_formats(out)
            progress("upload", 0.95)
            names = sorted(p.name for p in out.iterdir() if p.is_file())
            for name in names:
                rt.storage.put_file(output_key(job_id, name), out / name)
            if progress.canceled():
                raise JobCanceled(f"job {job_id} was canceled")
    except JobCanceled:
        _no_retry(job, "canceled", canceled=True)
        rt.storage.delete_prefix(job_prefix(job_id))
        raise
    except JobFailed as exc:
        _no_retry(job, str(exc))
        raise
    job.meta["progress"] = {"stage": "done", "fraction": 1.0}
    job.save_meta()
    result = {"outputs": names, "pipeline": rt.pipeline_name}
    if isinstance(summary, dict) and isinstance(summary.get("scan_to_body_mm"), dict):
        result["scan_to_body_mm"] = {k: float(v) for k, v in summary["scan_to_body_mm"].items()}
    return result
