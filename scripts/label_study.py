"""How CorrNet's labels depend on the orientation refinement and on the passes over random subsets.

    python scripts/label_study.py SUITE_DIR [N] [PASSES]    # e.g. .cache/net/eval/clothed_n64_s1000 32 4

Per variant, over the first N scans (10k points each, as `loopreg train eval`): part accuracy, canonical
error (median of the per-scan medians, mean) in cm and the orientation error (mean, degrees) against the GT
root axes. Variants: the search's axes, one pass (before refinement); refined axes, one pass; refined axes,
PASSES passes aggregated as the median of the blended canonical points, their mean, or the mean of the
winning part's regressions (what `CorrNet.predict_oriented` ships). A diagnostic: it reads gt.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from loopreg.body import BodyModel
from loopreg.net import load_corrnet
from loopreg.net.correspond import predict_axes
from loopreg.net.evaluate import eval_scans, gt_axes, gt_labels, rotation_error_deg
from loopreg.net.orient import search


def main() -> None:
    suite = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    passes = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    torch.set_num_threads(1)
    model, net = BodyModel.load(), load_corrnet().eval()
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for _, pts, gt in eval_scans(suite, n):  # one scan per iteration; each step is vectorised
        part, canon = gt_labels(model, gt, pts)
        A = gt_axes(gt)
        axes0, _, _ = search(net, pts)
        parts0, canon0, _ = net.predict_oriented((pts @ axes0).astype(np.float32))
        parts1, canon1, _, axes = predict_axes(net, pts, axes0, passes=1)
        q = torch.as_tensor((pts @ axes).astype(np.float32))
        m = min(net.cfg.n_points, len(q))
        subs = [torch.randperm(len(q), generator=torch.Generator().manual_seed(k))[:m] for k in range(passes)]
        with torch.no_grad():
            out = net(torch.stack([q[s] for s in subs]))
        backs = [cKDTree(q[s].numpy()).query(q.numpy())[1] for s in subs]
        prob = np.stack([out.logits[k].softmax(-1).numpy()[b] for k, b in enumerate(backs)])  # (K,N,14)
        blends = np.stack([out.canon[k].numpy()[b] for k, b in enumerate(backs)])  # (K,N,3)
        heads = np.stack([out.part_canon[k].numpy()[b] for k, b in enumerate(backs)])  # (K,N,14,3)
        won = prob.mean(0).argmax(1)
        variants = {
            "search axes, 1 pass": (parts0, canon0, axes0),
            "refined, 1 pass": (parts1, canon1, axes),
            f"refined, {passes} passes, median of blends": (won, np.median(blends, 0), axes),
            f"refined, {passes} passes, mean of blends": (won, blends.mean(0), axes),
            f"refined, {passes} passes, winning part's regressions (shipped)": (
                won,
                heads[:, np.arange(len(won)), won].mean(0),
                axes,
            ),
        }
        for name, (p, c, ax) in variants.items():
            err = np.linalg.norm(c - canon, axis=1) * 100
            rows.setdefault(name, []).append(
                ((p == part).mean(), np.median(err), err.mean(), rotation_error_deg(ax, A))
            )
    head = "part accuracy / canonical error median, mean cm / orientation deg"
    print(f"{suite.name}, first {len(next(iter(rows.values())))} scans: {head}")
    for name, r in rows.items():
        a = np.array(r)
        acc, err = f"{a[:, 0].mean():.2%}", f"{np.median(a[:, 1]):.2f}, {a[:, 2].mean():.2f}"
        print(f"  {name}: {acc} / {err} / {a[:, 3].mean():.1f}")


if __name__ == "__main__":
    main()
