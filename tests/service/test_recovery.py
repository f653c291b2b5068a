"""Failure handling with real processes: kill -9 a worker mid-job, cancel a running job, restart Redis."""

from __future__ import annotations

import os
import signal
import time

from svc_helpers import Workers, assert_problem, post_scan, service_env, wait_job


def _wait_stage(client, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] == "started" and job["progress"]["stage"] not in ("queued", "download"):
            return job
        time.sleep(0.1)
    raise TimeoutError(job)


def test_worker_killed_mid_job_is_retried(make_client, workers, scan_cm):
    client = make_client(queue_name="killq")
    slow = workers.start(queue_name="killq", stage_delay_s=2)
    job_id = post_scan(client, scan_cm).json()["id"]
    _wait_stage(client, job_id)
    os.kill(slow.pid, signal.SIGKILL)
    slow.wait()
    assert client.get(f"/jobs/{job_id}").json()["status"] == "started"  # stuck until the lease runs out
    workers.start(queue_name="killq")
    job = wait_job(client, job_id, timeout=60)
    assert job["status"] == "finished", job
    from rq.job import Job
    from rq.serializers import JSONSerializer

    record = Job.fetch(job_id, connection=client.app.state.redis, serializer=JSONSerializer)
    assert record.meta["attempt"] == 2 and record.retries_left == 1


def test_cancel_running_job(make_client, workers, scan_cm, storage_dir):
    client = make_client(queue_name="cancelq")
    workers.start(queue_name="cancelq", stage_delay_s=1)
    job_id = post_scan(client, scan_cm).json()["id"]
    _wait_stage(client, job_id)
    assert client.delete(f"/jobs/{job_id}").json()["status"] == "canceled"
    time.sleep(2.5)  # the worker notices at its next progress report
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "canceled" and job["error"] == "canceled on request"
    assert not (storage_dir / "jobs" / job_id).exists()
    nxt = post_scan(client, scan_cm).json()["id"]
    assert wait_job(client, nxt, timeout=60)["status"] == "finished"


def test_job_survives_redis_restart_with_aof(make_client, aof_redis, storage_dir, scan_cm, tmp_path):
    env = service_env(aof_redis.url, storage_dir)
    client = make_client(env)
    job_id = post_scan(client, scan_cm).json()["id"]
    time.sleep(1.5)  # appendfsync everysec
    aof_redis.kill()  # crash, no clean shutdown
    aof_redis.start()
    client = make_client(env)
    assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"
    pool = Workers(env, tmp_path)
    try:
        pool.start()
        assert wait_job(client, job_id, timeout=60)["status"] == "finished"
    finally:
        pool.stop_all()


def test_job_timeout_fails_once_with_a_clear_message(make_client, workers, scan_cm):
    """A job over LOOPREG_JOB_TIMEOUT_S fails at once (not retried: it would time out again)."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    client = make_client(queue_name="timeoutq", job_timeout_s=1)
    workers.start(queue_name="timeoutq", stage_delay_s=0.6)  # ~7 progress reports: about 4 s a job
    job_id = post_scan(client, scan_cm).json()["id"]
    job = wait_job(client, job_id, timeout=30)
    assert job["status"] == "failed", job
    assert "time limit of 1 s" in job["error"] and "not retried" in job["error"], job["error"]
    time.sleep(2.0)  # longer than the retry backoff (1 s): a retry would have re-queued it by now
    assert client.get(f"/jobs/{job_id}").json()["status"] == "failed"
    record = Job.fetch(job_id, connection=client.app.state.redis, serializer=JSONSerializer)
    assert record.meta["attempt"] == 1 and record.retries_left == 0
    assert_problem(client.get(f"/jobs/{job_id}/result"), 409, "time limit")
    # the worker survived its SIGALRM and serves a job with a normal limit
    ok = post_scan(make_client(queue_name="timeoutq", job_timeout_s=60), scan_cm).json()["id"]
    assert wait_job(client, ok, timeout=60)["status"] == "finished"
