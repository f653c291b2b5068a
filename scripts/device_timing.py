"""Stage timings of repeated registrations in one process, as a worker runs them (models loaded once).

    python scripts/device_timing.py SCAN DEVICE [REPEATS]   # e.g. scan.ply cuda 3

The first run pays the one-off costs (CUDA context, kernel loads, model caches); the later ones are what a
warm worker sees. Prints one JSON line per run: the device and report.json's `timings_s`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from loopreg.fit.pipeline import RegisterOptions, register_scan


def main() -> None:
    scan, device = Path(sys.argv[1]), sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    for run in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            report = register_scan(scan, Path(out), RegisterOptions(device=device))
            wall = time.perf_counter() - t
        timings = {k: round(v, 3) for k, v in report["timings_s"].items()}
        print(json.dumps({"run": run, "device": report["device"], "wall_s": round(wall, 3), **timings}))


if __name__ == "__main__":
    main()
