"""Seconds per `CorrNet.predict` on 10k-point scans: the previous path against the current ones, alternating.

    python scripts/time_corrnet.py SUITE_DIR [N] [THREADS]    # e.g. .cache/net/eval/clothed_n64_s1000 16 2

Per scan, in turn: "previous" (the search, one pass, the neighbour max through the gathered (B,N,k,C)
tensor, as before 2026-11-27), "1 pass" (the search, the refinement, one pass) and "shipped" (the search,
the refinement, `correspond.PASSES` passes). Prints the median and 95th percentile of each. Alternating
cancels the drift of a shared machine's speed; run it alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import loopreg.net.model as corrnet_model
from loopreg.data.scan_io import load_scan
from loopreg.net import load_corrnet
from loopreg.net.correspond import predict, predict_axes
from loopreg.net.evaluate import EVAL_POINTS
from loopreg.net.orient import search


def main() -> None:
    suite = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    items = json.loads((suite / "index.json").read_text())["items"][:n]
    net = load_corrnet()
    running_max = corrnet_model.neighbour_max

    def gathered_max(f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return corrnet_model.gather(f, idx).amax(2)

    def previous(p: np.ndarray) -> None:
        corrnet_model.neighbour_max = gathered_max
        try:
            axes, _, _ = search(net, p)
            predict_axes(net, p, axes, refine=False, passes=1)
        finally:
            corrnet_model.neighbour_max = running_max

    paths = {
        "previous": previous,
        "1 pass": lambda p: predict(net, p, passes=1),
        "shipped": lambda p: predict(net, p),
    }
    times: dict[str, list[float]] = {k: [] for k in paths}
    for item in items:  # one scan per iteration
        pts = load_scan(suite / item["scan"]).points
        pts = pts[np.random.default_rng(0).choice(len(pts), size=min(EVAL_POINTS, len(pts)), replace=False)]
        for name, run in paths.items():
            t = time.perf_counter()
            run(pts)
            times[name].append(time.perf_counter() - t)
    print(f"{suite.name}, {len(items)} scans, {torch.get_num_threads()} threads: s per scan median / p95")
    for name, t in times.items():
        print(f"  {name}: {np.median(t):.3f} / {np.quantile(t, 0.95):.3f}")


if __name__ == "__main__":
    main()
