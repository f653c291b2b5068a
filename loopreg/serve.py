"""`loopreg serve`: API + worker(s) (+ a local Redis when none is configured), stopped together."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from loopreg.paths import cache_dir

STOP_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    """A private redis-server with AOF (everysec), so queued jobs survive a restart."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed; install it or set LOOPREG_REDIS_URL")
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--save", "",
           "--appendonly", "yes", "--appendfsync", "everysec",
           "--maxmemory-policy", "noeviction"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    wait_for_port("127.0.0.1", port, proc)
    return proc


def wait_for_port(host: str, port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (a worker finishes its job first), then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(host: str = "127.0.0.1", port: int = 8000, redis_url: str | None = None, workers: int = 1) -> int:
    """Run until Ctrl-C or SIGTERM; then stop the API, the workers and the local Redis, in that order."""
    import uvicorn

    redis_url = redis_url or os.environ.get("LOOPREG_REDIS_URL")
    env = dict(os.environ)
    procs: list[subprocess.Popen] = []
    redis_proc = None
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown: turn them into exceptions we catch.
    previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        if not redis_url:
            rport = free_port()
            redis_proc = start_redis(rport, cache_dir("redis"))
            redis_url = f"redis://127.0.0.1:{rport}/0"
            print(f"loopreg: started a local Redis at {redis_url}", file=sys.stderr)
        env["LOOPREG_REDIS_URL"] = redis_url
        os.environ["LOOPREG_REDIS_URL"] = redis_url
        for i in range(workers):
            cmd = [sys.executable, "-m", "worker.main", "--name", f"serve-{os.getpid()}-{i}"]
            procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        from service.app import create_app
        from service.settings import Settings

        server = uvicorn.Server(
            uvicorn.Config(create_app(Settings()), host=host, port=port, log_level="info")
        )
        try:
            server.run()  # returns on SIGINT/SIGTERM (uvicorn's handlers)
        except (KeyboardInterrupt, SystemExit):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop(proc)
        if redis_proc is not None:
            stop(redis_proc)
    return 0
