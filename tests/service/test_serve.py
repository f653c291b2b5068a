"""`serve()`: local Redis + worker + API in one command, all stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from svc_helpers import ROOT

from loopreg.serve import free_port


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    return [int(p) for p, pp in (ln.split() for ln in out.splitlines()) if int(pp) == pid]


def test_serve_starts_and_stops_everything(tmp_path, scan_cm):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPREG_")}
    env.update(LOOPREG_STORAGE=str(tmp_path / "data"), LOOPREG_CACHE_DIR=str(tmp_path / "cache"),
               LOOPREG_PIPELINE="interim", PYTHONPATH=str(ROOT))  # fmt: skip
    code = f"from loopreg.serve import serve; serve('127.0.0.1', {port}, None, 1)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    try:
        deadline, ready = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, ready and ready.text
        with open(scan_cm, "rb") as fh:
            r = httpx.post(f"http://127.0.0.1:{port}/register", files={"scan": ("p.ply", fh)}, timeout=30)
        assert r.status_code == 202
        assert len(_children(proc.pid)) == 2  # redis-server + worker
    finally:
        children = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(40)
        time.sleep(0.5)
        alive = [pid for pid in children if "Z" not in _state(pid)]
        for pid in alive:  # do not leak processes when the test fails
            os.kill(pid, signal.SIGKILL)
    assert code == 0
    assert not alive, f"left running: {alive}"


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2]
    except OSError:
        return "Z"
