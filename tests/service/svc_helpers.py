"""Helpers for the service tests: Redis servers, worker processes, HTTP helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from loopreg.serve import wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RedisServer:
    port: int
    dir: Path
    aof: bool = False
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--dir", str(self.dir), "--maxmemory-policy", "noeviction", *aof]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, self.proc)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Workers:
    """Starts `python -m worker.main` processes and stops them at teardown."""

    base_env: dict
    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, wait: bool = True, **env: str) -> subprocess.Popen:
        full = {**self.base_env, **{f"LOOPREG_{k.upper()}": str(v) for k, v in env.items()}}
        name = f"test-{len(self.procs)}-{uuid.uuid4().hex[:8]}"
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([sys.executable, "-m", "worker.main", "--name", name], env=full, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.procs.append(proc)
        if wait:
            wait_for_worker(full["LOOPREG_REDIS_URL"], name, proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_worker(redis_url: str, name: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    from redis import Redis

    conn = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {proc.returncode}")
        if conn.exists(f"rq:worker:{name}"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"worker {name} did not register")


def service_env(redis_url: str, storage: Path | str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPREG_")}
    env.update(
        LOOPREG_REDIS_URL=redis_url,
        LOOPREG_STORAGE=str(storage),
        LOOPREG_PIPELINE="interim",
        LOOPREG_HEARTBEAT_TTL_S="3",
        LOOPREG_HOUSEKEEPING_S="1",
        LOOPREG_WORKER_TTL_S="20",
        LOOPREG_RETRIES="2",
        LOOPREG_RETRY_BACKOFF_S="1",
        PYTHONPATH=str(ROOT),
    )
    env.update({f"LOOPREG_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def make_settings(env: dict, **overrides):
    from service.settings import Settings

    values = {k[len("LOOPREG_") :].lower(): v for k, v in env.items() if k.startswith("LOOPREG_")}
    return Settings(**{**values, **overrides})


def wait_job(client, job_id: str, timeout: float = 60, until=("finished", "failed", "canceled")) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}").json()
        if body["status"] in until:
            return body
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {body['status']} after {timeout} s: {body}")


def post_scan(client, path: Path, name: str | None = None, headers: dict | None = None, **fields: str):
    with open(path, "rb") as fh:
        return client.post("/register", files={"scan": (name or path.name, fh)}, data=fields, headers=headers)


def assert_problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "instance"}
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["detail"].lower(), body["detail"]
    return body
