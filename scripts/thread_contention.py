"""Registration time by CPU threads, alone and beside a busy process (a noisy neighbour on one core).

    python scripts/thread_contention.py SUITE_DIR [N] [THREADS...]   # e.g. .cache/bench/wild_n32_s1000 12 2 1

For each thread count, registers the suite's first N scans (load, fit, every output file, as `loopreg bench`
times them) in this process, first alone, then with a busy-looping child process; prints each run's seconds
per scan (sorted) and the median. The first scan of the first run also pays the one-off loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from loopreg.bench.run import run_pipeline
from loopreg.fit.pipeline import RegisterOptions


def seconds_per_scan(suite: Path, n: int, threads: int) -> list[float]:
    items = json.loads((suite / "index.json").read_text())["items"][:n]
    opts = RegisterOptions(threads=threads)
    return [run_pipeline(suite / item["scan"], opts).seconds for item in items]


def main() -> None:
    suite = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    counts = [int(a) for a in sys.argv[3:]] or [2, 1]
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for threads in counts:
                secs = seconds_per_scan(suite, n, threads)
                label = "beside a busy process" if busy else "alone"
                print(f"{threads} thread(s), {label}: median {np.median(secs):.2f} s;",
                      " ".join(f"{s:.2f}" for s in sorted(secs)), flush=True)  # fmt: skip
        finally:
            if hog is not None:
                hog.kill()


if __name__ == "__main__":
    main()
