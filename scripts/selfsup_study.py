"""The LoopReg claim, measured: a warm start on 10 % of the labelled scans, the same + self-supervised loop
training on unlabelled scans, and fully supervised, on the held-out benchmark suites (seed 1000).

    python scripts/selfsup_study.py            # needs the training data (`loopreg train data`, as
                                               # scripts/train_corrnet.py makes it) and the shipped weights

Rows (all from the same data, seeds < 1000; the evaluation uses seed 1000):
  warm10      warm start on the first `--labelled` scans (`--steps` steps)
  warm10+sup  the same, continued `--selfsup-steps` steps on the labelled scans only (the control: as many
              extra steps as the self-supervised row, without the unlabelled scans)
  warm10+self the same warm start + `loopreg train selfsup` on `--unlabelled` other training scans, written as
              plain point-cloud files (their labels are never read), with the labelled batches mixed in
  full        the shipped weights (all labelled scans)
Writes .cache/net/study/results.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from loopreg.cli import main
from loopreg.paths import CACHE_DIR, MODEL_STORE

SUITES = ("clothed", "wild", "partial", "minimal")


def run(*argv: str) -> None:
    print("+ loopreg", " ".join(argv), file=sys.stderr, flush=True)
    if main(list(argv)) != 0:
        raise SystemExit(f"loopreg {argv[0]} {argv[1]} failed")


def export_unlabelled(data: Path, out: Path, start: int, n: int) -> Path:
    """Training scans start..start+n as .npy point clouds (points only: no labels leave the shards)."""
    from loopreg.net.data import ShardDataset

    out.mkdir(parents=True, exist_ok=True)
    ds = ShardDataset(data, start + n)
    for i in range(start, len(ds)):
        np.save(out / f"scan_{i:04d}.npy", ds.points[i].numpy())
    return out


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(CACHE_DIR / "net" / "data"))
    ap.add_argument("--labelled", type=int, default=48, help="labelled scans (10 %% of 480)")
    ap.add_argument("--unlabelled", type=int, default=200)
    ap.add_argument("--steps", type=int, default=600, help="warm start steps")
    ap.add_argument("--selfsup-steps", type=int, default=300)
    ap.add_argument("--full", default=str(MODEL_STORE / "weights" / "corrnet_cpu.pt"))
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--out", default=str(CACHE_DIR / "net" / "study"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    warm, ctrl, self_ = out / "warm10.pt", out / "warm10_sup.pt", out / "warm10_self.pt"
    if not warm.exists():
        run("train", "warmup", "--data", a.data, "--out", str(warm), "--steps", str(a.steps),
            "--max-scans", str(a.labelled))  # fmt: skip
    if not ctrl.exists():
        run("train", "warmup", "--data", a.data, "--out", str(ctrl), "--steps", str(a.selfsup_steps),
            "--max-scans", str(a.labelled), "--init", str(warm), "--lr", "3e-4", "--seed", "1")  # fmt: skip
    if not self_.exists():
        scans = export_unlabelled(Path(a.data), out / "unlabelled", a.labelled, a.unlabelled)
        run("train", "selfsup", "--scans", str(scans), "--init", str(warm), "--out", str(self_),
            "--state", str(out / "selfsup_state.pt"), "--steps", str(a.selfsup_steps),
            "--labelled", a.data, "--max-scans", str(a.labelled))  # fmt: skip
    rows = {"warm10": warm, "warm10+sup": ctrl, "warm10+self": self_, "full": Path(a.full)}
    results: dict[str, dict] = {}
    for name, weights in rows.items():
        for suite in SUITES:
            path = out / f"eval_{name}_{suite}.json"
            if not path.exists():
                run("train", "eval", "--weights", str(weights), "--suite", suite, "--n", str(a.eval_n),
                    "--seed", "1000", "--json", str(path))  # fmt: skip
            results.setdefault(name, {})[suite] = json.loads(path.read_text())
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("| row | " + " | ".join(f"{s} acc / med / mean" for s in SUITES) + " |")
    print("|---|" + "---|" * len(SUITES))
    for name, r in results.items():
        cells = [f"{100 * r[s]['part_accuracy']:.1f} % / {r[s]['corr_err_cm']['median']:.2f} / "
                 f"{r[s]['corr_err_cm']['mean']:.2f}" for s in SUITES]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    cli()
