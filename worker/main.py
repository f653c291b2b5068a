"""RQ worker entry point: `python -m worker.main` or `loopreg worker`.

CUDA safety: jobs run in the worker process itself (rq's SimpleWorker, no fork per job), so the pipeline
and its CUDA context are created once and reused; nothing forks after CUDA is initialised (the rq
scheduler runs as a thread here, not as rq's forked process). Run one worker per GPU, selected with
CUDA_VISIBLE_DEVICES. Liveness: a heartbeat thread refreshes the job's lease every heartbeat_ttl_s / 3;
if the process dies (kill -9, OOM), the lease runs out and any live worker's housekeeping thread
retries the abandoned job (rq's StartedJobRegistry cleanup + Retry).
"""

from __future__ import annotations

import argparse
import logging
import threading

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, WorkerStatus

from service.jobs import get_queue
from service.settings import Settings, get_settings
from worker.jobs import init_runtime

log = logging.getLogger("loopreg.worker")
TIMEOUT_MESSAGE = (
    "the job ran longer than its time limit of {} s and was stopped; it is not retried (it would run out of "
    "time again): send a smaller or decimated scan, or ask the operator for a GPU worker or a longer "
    "LOOPREG_JOB_TIMEOUT_S"
)


class LoopRegWorker(SimpleWorker):
    """SimpleWorker with a job heartbeat thread, a short fixed lease, and no retries after a timeout."""

    heartbeat_ttl_s: int = 60

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_ttl_s

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, execution, stop), name="heartbeat", daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry=None, exc_string: str = "", execution=None
    ) -> None:
        """A job that hit its time limit (rq's SIGALRM death penalty) fails at once with a clear message.

        Retrying it would only burn another job_timeout_s of worker time per retry: the same scan on the
        same kind of worker takes as long again. Retries stay for transient failures (dead worker, S3 blip).
        The check reads the whole traceback, so a timeout that pipeline code wrapped in another exception
        (e.g. a loader's `except Exception`) is still recognised.
        """
        if "JobTimeoutException" in exc_string:
            job.retries_left = 0
            job.meta["error"] = TIMEOUT_MESSAGE.format(job.timeout)
            try:
                job.save_meta()
            except Exception:
                log.warning("could not save the timeout message of job %s", job.id, exc_info=True)
            log.warning("job %s exceeded its time limit of %s s; not retried", job.id, job.timeout)
        super().handle_job_failure(
            job, queue, started_job_registry=started_job_registry, exc_string=exc_string, execution=execution
        )

    def _beat(self, job: Job, execution, stop: threading.Event) -> None:
        while not stop.wait(max(self.heartbeat_ttl_s / 3, 0.5)):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # Redis blip: the next beat retries
                log.warning("heartbeat for job %s failed", job.id, exc_info=True)


class Housekeeper(threading.Thread):
    """Moves due retries (backoff) into the queue and reclaims jobs of dead workers."""

    def __init__(self, settings: Settings, queue: Queue):
        super().__init__(name="housekeeper", daemon=True)
        self.settings, self.queue = settings, queue
        self.redis = Redis.from_url(settings.redis_url)
        self.stopped = threading.Event()

    def run(self) -> None:
        queue = Queue(self.queue.name, connection=self.redis, serializer=JSONSerializer)
        # rq's scheduler lock outlives a killed holder by 60 s; a short lock of our own keeps retries prompt.
        scheduler = RQScheduler([queue], connection=self.redis, serializer=JSONSerializer)
        scheduler.prepare_registries([queue.name])
        move_lock, clean_lock = f"loopreg:scheduling:{queue.name}", f"loopreg:housekeeping:{queue.name}"
        while not self.stopped.wait(1.0):
            try:
                if self.redis.set(move_lock, 1, nx=True, px=2000):
                    scheduler.enqueue_scheduled_jobs()  # due retries (backoff) -> queue
                if self.redis.set(clean_lock, 1, nx=True, px=int(self.settings.housekeeping_s * 1000)):
                    StartedJobRegistry(queue=queue).cleanup()  # abandoned jobs -> Retry or failed
            except Exception:
                log.warning("housekeeping failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def run_worker(settings: Settings | None = None, name: str | None = None, burst: bool = False) -> bool:
    """Run until SIGTERM/SIGINT (warm shutdown: the current job finishes first)."""
    settings = settings or get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    init_runtime(settings)  # the pipeline is loaded here, once
    connection = Redis.from_url(settings.redis_url)
    queue = get_queue(settings, connection)
    worker = LoopRegWorker(
        [queue],
        connection=connection,
        serializer=JSONSerializer,
        name=name,
        worker_ttl=settings.worker_ttl_s,
        maintenance_interval=max(int(settings.housekeeping_s), 1),
    )
    worker.heartbeat_ttl_s = settings.heartbeat_ttl_s
    keeper = Housekeeper(settings, queue)
    keeper.start()
    try:
        return worker.work(burst=burst, logging_level="INFO")
    finally:
        keeper.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loopreg-worker", description="Run a LoopReg RQ worker.")
    parser.add_argument("--name", default=None, help="worker name (default: random)")
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    args = parser.parse_args(argv)
    run_worker(name=args.name, burst=args.burst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
