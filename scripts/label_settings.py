"""Held-out label accuracy under other inference settings (passes, points per pass, orientation search).

    python scripts/label_settings.py SUITE_DIR N THREADS SPEC [SPEC ...]
    # SPEC = passes,pass_points,refine_points,n_yaw,top,subsets,wide_ups
    # e.g. .cache/net/eval/clothed_n64_s1000 32 1 4,4096,4096,12,12,3,26 4,2048,1024,8,4,2,14

Per SPEC: `evaluate_scans` (as `loopreg train eval`) with the shipped weights and correspond/orient's
constants set to it: part accuracy, canonical error median / mean cm, orientation error, seconds (only
comparable within one quiet run). A study: the constants are set in this process only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import loopreg.net.correspond as correspond
import loopreg.net.orient as orient
from loopreg.net import load_corrnet
from loopreg.net.evaluate import evaluate_scans


def main() -> None:
    suite, n = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(int(sys.argv[3]))
    net = load_corrnet().eval()
    search_defaults = orient.search.__wrapped__.__defaults__  # under torch.no_grad's wrapper
    for spec in sys.argv[4:]:
        passes, points, refine, n_yaw, top, subsets, wide = (int(v) for v in spec.split(","))
        correspond.PASS_POINTS, correspond.REFINE_POINTS, orient.WIDE_UPS = points, refine, wide
        orient.search.__wrapped__.__defaults__ = (0, n_yaw, subsets, top, search_defaults[-1])
        r = evaluate_scans(net, suite, n, passes)
        print(
            spec,
            f"{r['part_accuracy']:.2%}",
            r["corr_err_cm"],
            r["orientation_err_deg"],
            r["seconds_per_scan"],
            flush=True,
        )


if __name__ == "__main__":
    main()
