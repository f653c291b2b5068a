"""Why CorrNet's canonical error is larger on `wild` than on `clothed` (diagnostic; reads gt.json).

    python scripts/wild_gap.py factors SUITE_DIR EVAL_JSON     # per-scan errors split by what was drawn
    python scripts/wild_gap.py axes SUITE_DIR [N]              # the search's axes against the GT axes

`factors`: the per-scan mean errors of a `loopreg train eval --json` run, split by the scan's drawn
factors (noise, outliers, blobs, loose clothing, skirts, bent poses, output kind): count and mean error
of the scans with and without each. `axes`: over the first N scans (10k points each, as the eval), the
canonical error (mean, median, cm) of the shipped labels, of labels made at the GT root axes, and at the GT
axes then refined: if the GT axes do not help, the gap is not the orientation. One thread.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

BENT = ("bending_forward", "sitting", "squatting", "knee_raised")
LOOSE_M = 0.03  # top + bottom garment amplitude above this: loose clothing


def scan_factors(gt: dict) -> dict[str, bool | str]:
    """What the generator drew for one scan (gt.json), as yes/no factors and the output kind."""
    scan = gt["scan"]
    outfit = scan.get("clothe", {}).get("outfit", {})
    return {
        "noise > 2 mm": scan.get("noise", {}).get("sigma", 0.0) > 0.002,
        "outliers > 1 %": scan.get("outliers", {}).get("fraction", 0.0) > 0.01,
        "blobs >= 2": scan.get("blobs", {}).get("count", 0) >= 2,
        "loose clothing": (outfit.get("top_amp") or 0.0) + (outfit.get("bottom_amp") or 0.0) > LOOSE_M,
        "skirt": outfit.get("bottom") == "skirt",
        "bent pose": gt.get("pose_name") in BENT,
        "kind": str(scan.get("output")),
    }


def factors(suite: Path, eval_json: Path) -> None:
    per_scan = json.loads(eval_json.read_text())["per_scan"]
    items = {i["id"]: i for i in json.loads((suite / "index.json").read_text())["items"]}
    rows = []
    for r in per_scan:
        gt = json.loads((suite / items[r["id"]]["gt"]).read_text())
        rows.append((r["corr_err_cm_mean"], scan_factors(gt)))
    err = np.array([e for e, _ in rows])
    print(f"{suite.name}: {len(rows)} scans, mean of per-scan means {err.mean():.2f} cm")
    for key in rows[0][1]:
        values = [f[key] for _, f in rows]
        for v in sorted(set(values), key=str) if key == "kind" else [True]:
            yes = np.array([x == v for x in values])
            label = f"kind {v}" if key == "kind" else key
            with_ = f"{yes.sum()} with: {err[yes].mean():.2f} cm" if yes.any() else "none with"
            rest = f"{(~yes).sum()} without: {err[~yes].mean():.2f}" if (~yes).any() else "none without"
            print(f"  {label}: {with_} | {rest}")


def axes(suite: Path, n: int) -> None:
    from loopreg.body import BodyModel
    from loopreg.net import load_corrnet
    from loopreg.net.correspond import predict, predict_axes
    from loopreg.net.evaluate import eval_scans, gt_axes, gt_labels

    torch.set_num_threads(1)
    net, model = load_corrnet(), BodyModel.load()
    errs: dict[str, list[np.ndarray]] = {"shipped": [], "GT axes": [], "GT axes, refined": []}
    for item, pts, gt in eval_scans(suite, n):
        _, canon = gt_labels(model, gt, pts)
        preds = {
            "shipped": predict(net, pts).canon,
            "GT axes": predict_axes(net, pts, gt_axes(gt), refine=False)[1],
            "GT axes, refined": predict_axes(net, pts, gt_axes(gt), refine=True)[1],
        }
        for k, c in preds.items():
            errs[k].append(np.linalg.norm(c - canon, axis=1) * 100)
        print(item["id"], " ".join(f"{k}: {e[-1].mean():.2f}" for k, e in errs.items()), flush=True)
    for k, e in errs.items():
        a = np.concatenate(e)
        print(f"{k}: mean {a.mean():.2f} cm, median {np.median(a):.2f} cm")


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("factors", "axes"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "factors":
        factors(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        axes(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 24)


if __name__ == "__main__":
    main()
