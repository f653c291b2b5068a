"""Canonical correspondence error split by each point's distance to the ground-truth body (diagnostic).

    python scripts/corr_error_by_distance.py .cache/net/eval/wild_n64_s1000 [WEIGHTS]

The same points, labels and predictions as `loopreg train eval` (10k points per scan, seeded), on one
thread. Prints the mean error of all points, then per distance band (skin, cloth, loose cloth, clutter):
its share of the points, its mean error and what it adds to the overall mean. Reads gt.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from loopreg.body import BodyModel
from loopreg.net import load_corrnet
from loopreg.net.correspond import predict
from loopreg.net.evaluate import eval_scans, gt_labels_and_distance
from loopreg.net.train import load_weights

BANDS_CM = ((0, 2), (2, 5), (5, 10), (10, 20), (20, 40), (40, np.inf))


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    suite = Path(sys.argv[1])
    net = load_weights(sys.argv[2], "cpu") if len(sys.argv) > 2 else load_corrnet("cpu")
    model = BodyModel.load()
    errors, dists = [], []
    for _, pts, gt in eval_scans(suite):  # the points `loopreg train eval` draws
        _, canon, dist = gt_labels_and_distance(model, gt, pts)
        errors.append(np.linalg.norm(predict(net, pts).canon - canon, axis=1) * 100)
        dists.append(np.asarray(dist) * 100)
    e, d = np.concatenate(errors), np.concatenate(dists)
    print(f"{suite.name}: error mean {e.mean():.2f} cm, median {np.median(e):.2f} ({len(e)} points)")
    for lo, hi in BANDS_CM:
        m = (d >= lo) & (d < hi)
        mean = e[m].mean() if m.any() else float("nan")
        print(f"  {lo}-{hi} cm from the body: {m.mean() * 100:5.2f} % of points, error mean {mean:5.2f}, "
              f"adds {e[m].sum() / len(e):.2f}")  # fmt: skip
    for t in (10, 20):
        m = d < t
        print(f"  within {t} cm: error mean {e[m].mean():.2f}, median {np.median(e[m]):.2f}")


if __name__ == "__main__":
    main()
