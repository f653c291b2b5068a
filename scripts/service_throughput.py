"""Registrations per minute through the whole service (HTTP API, Redis queue, workers with the full
pipeline), by the number of workers on this machine.

    python scripts/service_throughput.py SUITE_DIR [N] [WORKERS...]   # .cache/bench/wild_n32_s1000 16 1 2

For each worker count: its own redis-server, one uvicorn API (local storage in a temporary directory) and
that many `python -m worker.main` processes (LOOPREG_PIPELINE=full; each warms up at start, and the clock
starts once all are ready). Then the suite's first N scans are POSTed at once and polled until all have
finished. Prints the wall time from the first POST to the last job's end, scans per minute, and the median
job turnaround (queued to ended) and worker run time. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from loopreg.serve import free_port, start_redis, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def run(suite: Path, n: int, workers: int) -> dict:
    items = json.loads((suite / "index.json").read_text())["items"][:n]
    with tempfile.TemporaryDirectory(prefix="loopreg-throughput-") as folder:
        tmp = Path(folder)
        rport, port = free_port(), free_port()
        procs = [start_redis(rport, tmp)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPREG_")}
        env.update(LOOPREG_REDIS_URL=f"redis://127.0.0.1:{rport}/0", LOOPREG_STORAGE=str(tmp / "storage"),
                   LOOPREG_PIPELINE="full", PYTHONPATH=str(ROOT))  # fmt: skip
        try:
            api = [
                "uvicorn",
                "service.app:create_app",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            procs.append(subprocess.Popen([sys.executable, "-m", *api], env=env, cwd=ROOT))
            for i in range(workers):
                cmd = [sys.executable, "-m", "worker.main", "--name", f"throughput-{i}"]
                procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL))
            wait_for_port("127.0.0.1", port, procs[1], timeout=60)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                deadline = time.monotonic() + 180
                while client.get("/readyz").json().get("workers", 0) < workers:  # warmed up and listening
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{workers} workers did not get ready")
                    time.sleep(0.5)
                t0 = time.perf_counter()
                ids = []
                for item in items:
                    path = suite / item["scan"]
                    with open(path, "rb") as fh:
                        r = client.post("/register", files={"scan": (path.name, fh)})
                    assert r.status_code == 202, r.text
                    ids.append(r.json()["id"])
                views = {}
                while len(views) < len(ids):
                    for job_id in ids:
                        if job_id not in views:
                            view = client.get(f"/jobs/{job_id}").json()
                            if view["status"] in ("finished", "failed", "canceled"):
                                views[job_id] = view
                    time.sleep(0.2)
                wall = time.perf_counter() - t0
        finally:
            for proc in reversed(procs):
                stop(proc)
    assert all(v["status"] == "finished" for v in views.values()), [v["status"] for v in views.values()]

    def secs(view: dict, a: str, b: str) -> float:
        return (datetime.fromisoformat(view[b]) - datetime.fromisoformat(view[a])).total_seconds()

    return {
        "workers": workers,
        "scans": len(ids),
        "wall_s": round(wall, 1),
        "scans_per_minute": round(len(ids) / wall * 60, 1),
        "turnaround_median_s": round(
            statistics.median(secs(v, "created_at", "ended_at") for v in views.values()), 2
        ),
        "worker_run_median_s": round(
            statistics.median(secs(v, "started_at", "ended_at") for v in views.values()), 2
        ),
    }


def main() -> None:
    suite = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    for workers in [int(a) for a in sys.argv[3:]] or [1, 2]:
        print(json.dumps(run(suite, n, workers)), flush=True)


if __name__ == "__main__":
    main()
