"""One command for the shipped CorrNet: data -> warm start(s) -> held-out eval -> manifest entry.

    python scripts/train_corrnet.py --recipe gpu  # corrnet.pt (default): scans ~100 min on 2 CPU cores,
                                                  # training 4 cycles of ~5-8 min on one H100/H200
    python scripts/train_corrnet.py --recipe cpu  # corrnet_cpu.pt: 2-core CPU, ~8 min data + 2 x ~23 min

The steps of each recipe are in `loopreg.net.recipes` (also what the manifest records). For the gpu recipe
without a local GPU: make and pack the data here, then run the training steps on the device tool with
scripts/gpu_warmup.sh (the packs are what it carries: float16, 45-48 MB).

Data seeds are < 1000; the evaluation uses the benchmark's held-out seed 1000 (n=64 per suite).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from loopreg.cli import main
from loopreg.net.recipes import RECIPES
from loopreg.paths import CACHE_DIR, PROJECT_ROOT

SUITES = ("clothed", "wild", "partial", "minimal")


def run(*argv: str) -> None:
    print("+ loopreg", " ".join(argv), file=sys.stderr, flush=True)
    if main(list(argv)) != 0:
        raise SystemExit(f"loopreg {argv[0]} {argv[1]} failed")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="cpu")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--no-ship", action="store_true", help="do not write the manifest entry")
    a = ap.parse_args()
    os.chdir(PROJECT_ROOT)  # the recipes' paths are relative to the project root
    steps = RECIPES[a.recipe]
    out = steps[-1][steps[-1].index("--out") + 1]  # the last step writes the shipped weights
    name = Path(out).stem  # their manifest key
    for step in steps:
        run(*step, *(("--workers", str(a.workers)) if step[1] == "data" else ()))
    metrics = {}
    for suite in SUITES:
        path = CACHE_DIR / "net" / f"eval_{name}_{suite}.json"
        run("train", "eval", "--weights", out, "--suite", suite, "--n", str(a.eval_n), "--seed", "1000",
            "--json", str(path))  # fmt: skip
        result = json.loads(path.read_text())
        metrics[f"{suite}_n{a.eval_n}_seed1000"] = {k: v for k, v in result.items() if k != "per_scan"}
    if not a.no_ship:
        path = CACHE_DIR / "net" / f"metrics_{name}.json"
        path.write_text(json.dumps(metrics, indent=1))
        run("train", "ship", "--weights", out, "--metrics", str(path), "--name", name, "--recipe", a.recipe)


if __name__ == "__main__":
    cli()
