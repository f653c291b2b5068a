"""One command for the shipped CorrNet: data -> pack -> warm start -> held-out eval -> manifest entry.

    python scripts/train_corrnet.py --device cuda  # shipped recipe; H100 + 16 cores: ~80 s data, ~3 min train
    python scripts/train_corrnet.py --device cpu --steps 1000 --batch 4  # ~2 h on 2 CPU cores, less accurate

Data seeds are < 1000; the evaluation uses the benchmark's held-out seed 1000.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from loopreg.cli import main
from loopreg.paths import CACHE_DIR, MODEL_STORE


def run(*argv: str) -> None:
    print("+ loopreg", " ".join(argv), file=sys.stderr, flush=True)
    if main(list(argv)) != 0:
        raise SystemExit(f"loopreg {argv[0]} {argv[1]} failed")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scans", type=int, default=520)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", default=str(MODEL_STORE / "weights" / "corrnet.pt"))
    ap.add_argument("--no-ship", action="store_true", help="do not write the manifest entry")
    a = ap.parse_args()
    data, pack = CACHE_DIR / "net" / "data", CACHE_DIR / "net" / "pack"
    run("train", "data", "--out", str(data), "--n", str(a.scans), "--workers", str(a.workers))
    run("train", "pack", "--data", str(data), "--out", str(pack))
    run("train", "warmup", "--data", str(pack), "--out", a.out, "--steps", str(a.steps),
        "--batch", str(a.batch), "--device", a.device)  # fmt: skip
    metrics = {}
    for suite in ("clothed", "wild"):
        path = CACHE_DIR / "net" / f"eval_{suite}.json"
        run(
            "train",
            "eval",
            "--weights",
            a.out,
            "--suite",
            suite,
            "--n",
            "32",
            "--seed",
            "1000",
            "--json",
            str(path),
        )
        metrics[f"{suite}_n32_seed1000"] = json.loads(path.read_text())
    if not a.no_ship:
        (CACHE_DIR / "net" / "metrics.json").write_text(json.dumps(metrics, indent=1))
        run("train", "ship", "--weights", a.out, "--metrics", str(CACHE_DIR / "net" / "metrics.json"))


if __name__ == "__main__":
    cli()
