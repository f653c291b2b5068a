"""Seconds per `CorrNet.predict` on 10k-point scans: earlier paths against the current ones, alternating.

    python scripts/time_corrnet.py SUITE_DIR [N] [THREADS]    # e.g. .cache/net/eval/clothed_n64_s1000 16 2

THREADS sets torch's threads and the KD-tree queries' workers (`loopreg.threads.cpu_threads`; before
2026-12-06 only torch's: the queries used every core).

Per scan, in turn: "previous" (the search, one pass, the neighbour max through the gathered (B,N,k,C)
tensor, as before 2026-11-27), "4 x 4096" (the search of 12 turns with 12 re-scored on 3 subsets and 26
wide ups, the refinement and 4 passes, all of 4096 points, the head on the concatenated features: shipped
on 2026-11-27 until 07:15 UTC), "1 pass" / "3 passes" (the current search, the refinement, one or three
passes) and "shipped" (the current search, the refinement, `correspond.PASSES` passes of `PASS_POINTS`).
Prints the median and 95th percentile of each. Alternating cancels the drift of a shared machine's speed;
run it alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import loopreg.net.correspond as correspond
import loopreg.net.model as corrnet_model
import loopreg.net.orient as orient
from loopreg.data.scan_io import load_scan
from loopreg.net import load_corrnet
from loopreg.net.correspond import predict, predict_axes
from loopreg.net.evaluate import EVAL_POINTS
from loopreg.net.orient import search
from loopreg.threads import cpu_threads


def main() -> None:
    suite = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    with cpu_threads(threads):  # torch's threads and the KD-tree queries' workers
        run(suite, n)


def run(suite: Path, n: int) -> None:
    items = json.loads((suite / "index.json").read_text())["items"][:n]
    net = load_corrnet()
    running_max = corrnet_model.neighbour_max

    def gathered_max(f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return corrnet_model.gather(f, idx).amax(2)

    def concatenated_head(self, local: torch.Tensor, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.head[0](torch.cat([local, g.expand(-1, x.shape[1], -1), x], -1))

    def old_path(p: np.ndarray, max_of_gathered: bool, refine: bool, passes: int) -> None:
        """The 2026-11-27 morning's settings: search of 12 turns, 12 re-scored on 3 subsets, 26 wide ups;
        passes of 4096 points; the head on the concatenated features (and, before it, the gathered max)."""
        head, wide = corrnet_model.CorrNet._head_in, orient.WIDE_UPS
        points = correspond.PASS_POINTS, correspond.REFINE_POINTS
        corrnet_model.CorrNet._head_in = concatenated_head
        orient.WIDE_UPS, correspond.PASS_POINTS, correspond.REFINE_POINTS = 26, 4096, 4096
        if max_of_gathered:
            corrnet_model.neighbour_max = gathered_max
        try:
            axes, _, _ = search(net, p, 0, 12, 3, 12)
            predict_axes(net, p, axes, refine=refine, passes=passes)
        finally:
            corrnet_model.CorrNet._head_in, orient.WIDE_UPS = head, wide
            correspond.PASS_POINTS, correspond.REFINE_POINTS = points
            corrnet_model.neighbour_max = running_max

    paths = {
        "previous": lambda p: old_path(p, True, False, 1),
        "4 x 4096": lambda p: old_path(p, False, True, 4),
        "1 pass": lambda p: predict(net, p, passes=1),
        "3 passes": lambda p: predict(net, p, passes=3),
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
