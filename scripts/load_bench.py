"""Load benchmark of the LoopReg HTTP API on loopback (bounded; a few minutes at most).

    python scripts/load_bench.py [--scan-mb 10] [--posts 40] [--post-concurrency 4] [--get-seconds 10]
                                 [--get-connections 16] [--jobs 5] [--api-workers 1] [--json OUT]

Starts its own redis-server, one uvicorn API (`service.app:create_app`) with local storage in a temporary
directory, and measures:

1. POST /register ingestion with a valid binary PLY point cloud of --scan-mb MiB (sampled from the default
   body): --posts uploads, --post-concurrency at a time, no worker running (the jobs stay queued), so this
   is upload streaming + header checks + copy to storage + enqueue. Also the latency of single uploads
   (one at a time): the time from the POST's first byte to the job being queued (the 202).
2. GET /jobs/{id} req/s with `wrk` (apt-get install wrk) when present, else an asyncio httpx client.
3. API overhead per job with one worker (LOOPREG_PIPELINE=interim, a placement stand-in that takes a few
   seconds on a 22k-point scan): POST of a small scan -> 202, queue wait, the worker's run, and the
   downloads of params, report, body.obj, scan_parts.ply and preview.png. The pipeline's own time is
   reported separately.

The API runs with whatever HTTP stack is importable: h11 + asyncio in the dev venv; the api image installs
uvicorn[standard] (httptools + uvloop). To measure that without touching the venv:
    pip install --target /tmp/uvstd httptools uvloop && PYTHONPATH=/tmp/uvstd python scripts/load_bench.py

Prints a JSON report (and writes it with --json). Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopreg.serve import free_port, wait_for_port  # noqa: E402

BOUNDARY = "loopregbenchboundary7f3a"
MIB = 1024 * 1024


def ply_cloud(path: Path, size_mib: float, seed: int = 0) -> int:
    """A binary PLY point cloud of about size_mib MiB sampled from the default body's surface (metres)."""
    import trimesh

    from loopreg.body import BodyModel

    model = BodyModel.load()
    mesh = trimesh.Trimesh(model.rest().vertices[0].detach().numpy(), model.faces.numpy(), process=False)
    header_guess = 120
    n = int((size_mib * MIB - header_guess) // 12)
    points, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    head = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    ).encode()
    path.write_bytes(head + points.astype("<f4").tobytes())
    return n


def multipart(path: Path, **fields: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="scan"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
    )
    return b"".join(parts) + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"p50": round(pct(ms, 50), 2), "p90": round(pct(ms, 90), 2), "max": round(max(ms), 2)}


async def post_phase(base: str, body: bytes, n: int, concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                r = await client.post("/register", content=body, headers=HEADERS)
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 202:
                    ids.append(r.json()["id"])

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0
    return {
        "requests": n,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "req_per_s": round(n / wall, 2),
        "mib_per_s": round(n * len(body) / MIB / wall, 1),
        "latency_ms": summary_ms(latencies),
        "statuses": statuses,
        "_ids": ids,
    }


def wrk_get(base: str, path: str, seconds: int, connections: int) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", base + path]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "tool": "wrk -t2",
        "command": " ".join(cmd),
        "connections": connections,
        "seconds": seconds,
        "req_per_s": rps,
        "latency": {f"p{k}": v for k, v in lat.items()},
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else None,
    }


async def httpx_get(base: str, path: str, seconds: int, connections: int) -> dict:
    latencies: list[float] = []
    bad = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal bad
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.get(path)
                latencies.append(time.perf_counter() - t0)
                bad += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        wall = time.perf_counter() - t0
    return {
        "tool": "httpx asyncio",
        "connections": connections,
        "seconds": seconds,
        "req_per_s": round(len(latencies) / wall, 1),
        "latency_ms": summary_ms(latencies),
        "non_2xx": bad,
    }


def job_overhead(base: str, scan: Path, jobs: int) -> dict:
    """Sequential jobs through one interim worker: where the time of a job goes, seen from a client."""
    rows = []
    body = multipart(scan, units="m")
    downloads = [
        "result",
        "report",
        "mesh?kind=body&format=obj",
        "mesh?kind=scan_parts&format=ply",
        "preview",
    ]
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(jobs):
            t0 = time.perf_counter()
            r = client.post("/register", content=body, headers=HEADERS)
            t_post = time.perf_counter() - t0
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            polls = 0
            while True:
                view = client.get(f"/jobs/{job_id}").json()
                polls += 1
                if view["status"] in ("finished", "failed", "canceled"):
                    break
                time.sleep(0.02)
            t_done = time.perf_counter() - t0
            assert view["status"] == "finished", view
            created = datetime.fromisoformat(view["created_at"])
            started = datetime.fromisoformat(view["started_at"])
            ended = datetime.fromisoformat(view["ended_at"])
            t1 = time.perf_counter()
            sizes = {}
            for d in downloads:
                got = client.get(f"/jobs/{job_id}/{d}")
                assert got.status_code == 200, (d, got.text)
                sizes[d.split("&")[0]] = len(got.content)
            t_dl = time.perf_counter() - t1
            t_poll = time.perf_counter()
            client.get(f"/jobs/{job_id}")
            t_poll = time.perf_counter() - t_poll
            rows.append(
                {
                    "post_s": t_post,
                    "queue_wait_s": (started - created).total_seconds(),
                    "worker_run_s": (ended - started).total_seconds(),
                    "client_total_s": t_done,
                    "downloads_s": t_dl,
                    "poll_s": t_poll,
                    "download_bytes": sum(sizes.values()),
                }
            )
    med = {k: round(statistics.median(r[k] for r in rows), 4) for k in rows[0]}
    med["api_overhead_s"] = round(med["post_s"] + med["downloads_s"] + med["poll_s"], 4)
    return {"jobs": jobs, "scan_bytes": scan.stat().st_size, "median": med, "files": sizes}


def machine() -> dict:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    import fastapi
    import uvicorn

    wrk = shutil.which("wrk")
    wrk_v = (
        subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        if wrk
        else None
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
        "wrk": wrk_v,
        "kernel": platform.release(),
        "http_impl": "httptools" if _has("httptools") else "h11",
        "loop": "uvloop" if _has("uvloop") else "asyncio",
    }


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def loadavg() -> str:
    return open("/proc/loadavg").read().strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scan-mb", type=float, default=10.0, help="size of the uploaded PLY in MiB")
    ap.add_argument("--posts", type=int, default=40, help="uploads in the throughput phase")
    ap.add_argument("--post-concurrency", type=int, default=4)
    ap.add_argument("--single-posts", type=int, default=8, help="uploads one at a time (latency)")
    ap.add_argument("--get-seconds", type=int, default=10)
    ap.add_argument("--get-connections", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=5, help="sequential jobs through one interim worker")
    ap.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--no-wrk", action="store_true", help="use the Python client for GET even if wrk exists")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": machine(),
        "loadavg_before": loadavg(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="loopreg-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        rport, port = free_port(), free_port()
        redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(rport),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
            ],
            stdout=subprocess.DEVNULL,
        )
        procs.append(redis)
        wait_for_port("127.0.0.1", rport, redis)
        (tmp / "spool").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPREG_")}
        env.update(
            LOOPREG_REDIS_URL=f"redis://127.0.0.1:{rport}/0",
            LOOPREG_STORAGE=str(tmp / "storage"),
            LOOPREG_SPOOL_DIR=str(tmp / "spool"),
            LOOPREG_PIPELINE="interim",
            LOOPREG_QUEUE_NAME="bench",
            LOOPREG_MAX_UPLOAD_MB="64",
            PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "service.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.api_workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            cwd=ROOT,
        )
        procs.append(api)
        wait_for_port("127.0.0.1", port, api, timeout=60)
        base = f"http://127.0.0.1:{port}"

        big = tmp / "cloud.ply"
        points = ply_cloud(big, args.scan_mb)
        body = multipart(big, units="m")
        report["scan"] = {"bytes": big.stat().st_size, "points": points, "request_bytes": len(body)}
        print(f"scan: {big.stat().st_size / MIB:.2f} MiB, {points} points", file=sys.stderr)

        asyncio.run(post_phase(base, body, 2, 1))  # warm-up
        single = asyncio.run(post_phase(base, body, args.single_posts, 1))
        report["post_single"] = {k: v for k, v in single.items() if not k.startswith("_")}
        print(f"POST one at a time: {single['latency_ms']}", file=sys.stderr)
        post = asyncio.run(post_phase(base, body, args.posts, args.post_concurrency))
        report["post"] = {k: v for k, v in post.items() if not k.startswith("_")}
        print(
            f"POST x{args.post_concurrency}: {post['req_per_s']} req/s {post['mib_per_s']} MiB/s",
            file=sys.stderr,
        )
        shutil.rmtree(tmp / "storage" / "jobs", ignore_errors=True)

        job_path = f"/jobs/{post['_ids'][0]}"
        if shutil.which("wrk") and not args.no_wrk:
            get = wrk_get(base, job_path, args.get_seconds, args.get_connections)
        else:
            get = asyncio.run(httpx_get(base, job_path, args.get_seconds, args.get_connections))
        report["get_job"] = get
        print(f"GET /jobs/{{id}}: {get['req_per_s']} req/s", file=sys.stderr)

        from redis import Redis
        from rq import Queue

        Queue("bench", connection=Redis.from_url(env["LOOPREG_REDIS_URL"])).empty()  # drop the queued uploads
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker.main", "--name", "bench-worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(worker)
        deadline = time.monotonic() + 90
        while httpx.get(base + "/readyz").status_code != 200:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the bench worker did not start")
            time.sleep(0.3)
        small = tmp / "person.ply"
        ply_cloud(small, 0.25)  # ~22k points
        report["job_overhead"] = job_overhead(base, small, args.jobs)
        print(f"per job: {report['job_overhead']['median']}", file=sys.stderr)
        report["loadavg_after"] = loadavg()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
