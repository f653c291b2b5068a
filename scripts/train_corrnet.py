"""One command for the shipped CorrNet: data -> warm start -> held-out eval -> manifest entry.

    python scripts/train_corrnet.py  # the shipped recipe: 2-core CPU, ~16 min data + 2 x ~33 min training

Training: a cosine schedule of `--steps` steps from lr 2e-3, then a warm restart (SGDR) of `--restart-steps`
steps from lr `--restart-lr` with another sampling seed (validation accuracy was still rising at the end of
the first cycle).

Data seeds are < 1000; the evaluation uses the benchmark's held-out seed 1000 (n=64 per suite).
On a GPU machine: `--device cuda --workers 16` (data ~80 s on 16 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from loopreg.cli import main
from loopreg.paths import CACHE_DIR, MODEL_STORE

SUITES = ("clothed", "wild", "partial", "minimal")


def run(*argv: str) -> None:
    print("+ loopreg", " ".join(argv), file=sys.stderr, flush=True)
    if main(list(argv)) != 0:
        raise SystemExit(f"loopreg {argv[0]} {argv[1]} failed")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scans", type=int, default=520)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--restart-steps", type=int, default=1200, help="0: one cycle only")
    ap.add_argument("--restart-lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--out", default=str(MODEL_STORE / "weights" / "corrnet.pt"))
    ap.add_argument("--no-ship", action="store_true", help="do not write the manifest entry")
    a = ap.parse_args()
    data = CACHE_DIR / "net" / "data"
    run("train", "data", "--out", str(data), "--n", str(a.scans), "--workers", str(a.workers))
    first = a.out if a.restart_steps == 0 else str(CACHE_DIR / "net" / "run1" / "corrnet.pt")
    run("train", "warmup", "--data", str(data), "--out", first, "--steps", str(a.steps),
        "--batch", str(a.batch), "--device", a.device)  # fmt: skip
    if a.restart_steps:
        run("train", "warmup", "--data", str(data), "--out", a.out, "--steps", str(a.restart_steps),
            "--batch", str(a.batch), "--device", a.device, "--init", first, "--lr", str(a.restart_lr),
            "--seed", "1")  # fmt: skip
    metrics = {}
    for suite in SUITES:
        path = CACHE_DIR / "net" / f"eval_{suite}.json"
        run("train", "eval", "--weights", a.out, "--suite", suite, "--n", str(a.eval_n), "--seed", "1000",
            "--json", str(path))  # fmt: skip
        metrics[f"{suite}_n{a.eval_n}_seed1000"] = json.loads(path.read_text())
    if not a.no_ship:
        (CACHE_DIR / "net" / "metrics.json").write_text(json.dumps(metrics, indent=1))
        run("train", "ship", "--weights", a.out, "--metrics", str(CACHE_DIR / "net" / "metrics.json"))


if __name__ == "__main__":
    cli()
