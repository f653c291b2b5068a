"""Held-out evaluation of CorrNet on a synthetic suite (seed >= 1000, as the benchmark).

Per scan: up to 10k scan points (scan frame, as written by `loopreg synth`), GT from gt.json the same way as
the training labels (closest GT body surface point -> part, canonical point on the rest template), then
part accuracy and canonical correspondence error (cm), the orientation search's error (degrees, against the
GT root axes) and the inference time of `CorrNet.predict` (orientation search included).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from loopreg.net.data import label_points
from loopreg.net.model import CorrNet
from loopreg.paths import cache_dir

EVAL_POINTS = 10_000


def gt_axes(gt: dict) -> np.ndarray:
    """(3,3) the GT body's root axes (left, up, forward) as columns in the scan frame."""
    from scipy.spatial.transform import Rotation

    T = np.asarray(gt["to_scan"], dtype=np.float64)[:3, :3]
    return T / np.cbrt(np.linalg.det(T)) @ Rotation.from_rotvec(gt["global_orient"]).as_matrix()


def rotation_error_deg(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(A.T @ B) - 1) / 2, -1.0, 1.0))))


def gt_labels(model, gt: dict, points_scan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GT part and canonical point of scan-frame points from a gt.json dict."""
    part, canon, _ = gt_labels_and_distance(model, gt, points_scan)
    return part, canon


def gt_labels_and_distance(model, gt: dict, points_scan: np.ndarray) -> tuple[np.ndarray, ...]:
    """gt_labels and each point's distance (model-frame metres) to the GT body surface."""
    from loopreg.data.scanner import similarity_inverse

    inv = similarity_inverse(np.asarray(gt["to_scan"], dtype=np.float64))
    pts = points_scan.astype(np.float64) @ inv[:3, :3].T + inv[:3, 3]
    with torch.no_grad():
        out = model(betas=torch.tensor([gt["betas"]]), global_orient=torch.tensor([gt["global_orient"]]),
                    body_pose=torch.tensor([gt["body_pose"]]),
                    transl=torch.tensor([gt["transl"]]))  # fmt: skip
    v = out.vertices[0].numpy().astype(np.float64)
    template = model.v_template.numpy().astype(np.float64)
    return label_points(pts, v, model.faces.numpy(), model.parts.numpy(), template)


def eval_scans(suite_dir: Path, max_scans: int | None = None) -> Iterator[tuple[dict, np.ndarray, dict]]:
    """Each scan of a suite as every evaluation draws it: (index item, up to EVAL_POINTS scan points picked
    with seed 0, its gt.json)."""
    from loopreg.data.scan_io import load_scan

    index = json.loads((suite_dir / "index.json").read_text())
    for item in index["items"][:max_scans]:  # one scan per iteration
        pts = load_scan(suite_dir / item["scan"]).points
        rng = np.random.default_rng(0)
        pts = pts[rng.choice(len(pts), size=min(EVAL_POINTS, len(pts)), replace=False)]
        yield item, pts, json.loads((suite_dir / item["gt"]).read_text())


def evaluate_scans(
    net: CorrNet, suite_dir: Path, max_scans: int | None = None, passes: int | None = None
) -> dict:
    from loopreg.body import BodyModel
    from loopreg.net.correspond import PASSES, predict

    passes = PASSES if passes is None else passes

    model = BodyModel.load()
    acc, errs, times, orient, per_scan = [], [], [], [], []
    for item, pts, gt in eval_scans(suite_dir, max_scans):  # each step is vectorised
        part, canon = gt_labels(model, gt, pts)
        t = time.perf_counter()
        pred = predict(net, pts, passes=passes)
        times.append(time.perf_counter() - t)
        acc.append(float((pred.parts == part).mean()))
        errs.append(np.linalg.norm(pred.canon - canon, axis=1) * 100)
        orient.append(rotation_error_deg(pred.axes, gt_axes(gt)))
        per_scan.append({"id": item["id"], "part_accuracy": round(acc[-1], 4),
                         "corr_err_cm_mean": round(float(errs[-1].mean()), 2),
                         "orientation_err_deg": round(orient[-1], 1)})  # fmt: skip
    e, o = np.concatenate(errs), np.array(orient)
    return {
        "n": len(acc),
        "part_accuracy": round(float(np.mean(acc)), 4),
        "corr_err_cm": {"median": round(float(np.median(e)), 2), "mean": round(float(e.mean()), 2)},
        "orientation_err_deg": {"median": round(float(np.median(o)), 1), "over_45": int((o > 45).sum())},
        "seconds_per_scan": {
            "median": round(float(np.median(times)), 3),
            "p95": round(float(np.quantile(times, 0.95)), 3),
        },
        "points_per_scan": EVAL_POINTS,
        "passes": passes,
        "threads": torch.get_num_threads(),
        "per_scan": per_scan,  # which scans carry the mean
    }


def evaluate_suite(
    weights: Path, suite: str, n: int, seed: int, data: Path | None = None, passes: int | None = None
) -> dict:
    from loopreg.data.synth import generate_suite
    from loopreg.net.train import load_weights

    if seed < 1000:
        raise ValueError("held-out evaluation uses seeds >= 1000 (training uses seeds < 1000)")
    suite_dir = data or cache_dir("net", "eval") / f"{suite}_n{n}_s{seed}"
    if not (suite_dir / "index.json").exists():
        generate_suite(suite, n, seed, suite_dir)
    net = load_weights(weights)
    return {
        "suite": suite,
        "seed": seed,
        "weights": str(weights),
        **evaluate_scans(net, suite_dir, n, passes),
    }
