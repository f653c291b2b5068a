"""V2V of the pipeline with a given loop-loss anchor weight in the surface fit (FitPlan.anchor_weight).

    python scripts/anchor_ablation.py WEIGHT N SUITES   # e.g. 0.2 10 minimal,clothed

Needs the suites under .cache/bench/<suite>_n32_s1000 (made by `loopreg bench --suite S --n 32`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from loopreg.bench.run import MethodOutput, evaluate
from loopreg.data.scan_io import load_scan
from loopreg.fit.export import transform
from loopreg.fit.pipeline import FitPlan, RegisterOptions, register_loaded


def main() -> None:
    weight, n, suites = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")

    def method(path: Path, opts: RegisterOptions) -> MethodOutput:
        t = time.perf_counter()
        scan = load_scan(path)
        summary, _ = register_loaded(scan, opts, plan=FitPlan(anchor_weight=weight))
        fit, norm = summary["fit"], summary["normalisation"]
        verts = transform(fit.vertices.double().cpu().numpy(), norm.to_scan)
        joints = transform(fit.joints.double().cpu().numpy(), norm.to_scan)
        return MethodOutput(verts, joints, scan.points, time.perf_counter() - t)

    for suite in suites:
        d = Path(".cache/bench") / f"{suite}_n32_s1000"
        items = json.loads((d / "index.json").read_text())["items"][:n]
        v = np.array([r.v2v_cm for r in evaluate(method, d, items, RegisterOptions(), log=lambda *a: None)])
        print(f"{suite} anchor {weight}: V2V mean {v.mean():.2f} median {np.median(v):.2f} cm, "
              f"failures {(v > 5).mean():.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
