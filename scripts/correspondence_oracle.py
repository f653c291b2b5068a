"""Where a suite's registration error comes from: the pipeline with a part of it replaced by the truth.

    python scripts/correspondence_oracle.py SUITE_DIR MODE [FIRST:LAST]

MODE `corr`: ground-truth canonical points (and parts, weight 1) replace the network's; the rest of the
pipeline runs as shipped. MODE `start`: the loop fit is replaced by the ground-truth parameters, so the
surface fit starts from the truth (what it adds or undoes on its own). Per scan: V2V (cm) of the loop fit
(the surface fit's start) and of the final fit, and the final body's rest-pose height minus the truth's.
A diagnostic: it patches the pipeline's functions in this process only and reads ground truth (gt.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

import loopreg.fit.pipeline as pipeline
from loopreg.bench.run import gt_body
from loopreg.data.normalise import normalise
from loopreg.data.scan_io import load_scan
from loopreg.fit.export import transform
from loopreg.fit.loop import LoopFitResult
from loopreg.net.evaluate import gt_labels

STATE: dict = {}


def gt_correspondences(net, model, points: np.ndarray, seed: int) -> dict:
    parts, canon = gt_labels(model, STATE["gt"], transform(points.astype(np.float64), STATE["to_scan"]))
    ones = np.ones(len(points), np.float32)
    out = pipeline._from_labels(model, points, parts, canon.astype(np.float32), ones)
    out["runner_up"] = (np.eye(3), np.inf)  # no second orientation
    return out


def gt_loop_fit(model, body_field, scan, corr, weights, orient, transl, cfg, report=None) -> LoopFitResult:
    return LoopFitResult(canon=corr, loss=0.0, inliers=1.0, agreement=1.0, **STATE["gt_params"])


def gt_params_in_fit_frame(model, gt: dict, to_model: np.ndarray) -> dict[str, torch.Tensor]:
    """The truth's parameters in the pipeline's normalised frame (gt.json's frame -> scan -> normalised)."""
    M = to_model @ np.asarray(gt["to_scan"])
    R, t = M[:3, :3], M[:3, 3]
    R = R / np.cbrt(np.linalg.det(R))
    betas = torch.tensor(gt["betas"], dtype=torch.float32)
    with torch.no_grad():
        j0 = model(betas=betas[None]).joints[0, 0].double().numpy()
    orient = Rotation.from_matrix(R @ Rotation.from_rotvec(gt["global_orient"]).as_matrix()).as_rotvec()
    return {
        "betas": betas,
        "global_orient": torch.tensor(orient, dtype=torch.float32),
        "body_pose": torch.tensor(gt["body_pose"], dtype=torch.float32),
        "transl": torch.tensor(R @ j0 - j0 + R @ np.asarray(gt["transl"]) + t, dtype=torch.float32),
    }


def v2v(vertices: torch.Tensor, to_gt: np.ndarray, gt_vertices: np.ndarray) -> float:
    moved = transform(vertices.double().numpy(), to_gt)
    return float(np.linalg.norm(moved - gt_vertices, axis=1).mean() * 100)


def main() -> None:
    suite, mode = Path(sys.argv[1]), sys.argv[2]
    items = json.loads((suite / "index.json").read_text())["items"]
    first, last = map(int, sys.argv[3].split(":")) if len(sys.argv) > 3 else (0, len(items))
    torch.set_num_threads(1)
    model = pipeline.get_model(None, torch.device("cpu"))
    if mode == "corr":
        pipeline.correspondences = gt_correspondences
    elif mode == "start":
        pipeline.fit_loop = gt_loop_fit
    else:
        raise SystemExit("MODE is corr or start")
    surface_fit = pipeline.fit_surface

    def keep_start(*args, **kw):
        if "init" in kw:  # the surface fit from the loop fit (not the fallback's)
            STATE["start"] = kw["init"]
        return surface_fit(*args, **kw)

    pipeline.fit_surface = keep_start

    def height(betas: torch.Tensor) -> float:
        with torch.no_grad():
            y = model(betas=betas.reshape(1, -1)).vertices[0, :, 1]
        return float(y.max() - y.min())

    rows = []
    for k in range(first, last):
        scan = load_scan(suite / items[k]["scan"])
        gt = json.loads((suite / items[k]["gt"]).read_text())
        norm = normalise(scan.points, "auto", "auto")
        STATE.update(gt=gt, to_scan=norm.to_scan, gt_params=gt_params_in_fit_frame(model, gt, norm.to_model))
        STATE["start"] = None
        summary, _ = pipeline.register_loaded(scan, pipeline.RegisterOptions(device="cpu"))
        fit = summary["fit"]
        to_gt = np.linalg.inv(np.asarray(gt["to_scan"])) @ np.asarray(norm.to_scan)
        gv, _ = gt_body(model, gt)

        start = STATE["start"]
        if start is None:  # the fallback replaced the loop path
            loop_cm = float("nan")
        else:
            with torch.no_grad():
                loop_body = model(**{key: v.reshape(1, -1) for key, v in start.items()}).vertices[0]
            loop_cm = v2v(loop_body, to_gt, gv)
        dh = (height(fit.betas) - height(torch.tensor(gt["betas"]))) * 100
        rows.append((loop_cm, v2v(fit.vertices, to_gt, gv), dh))
        print(f"{items[k]['id'] if 'id' in items[k] else k}: loop {loop_cm:.2f} final {rows[-1][1]:.2f} cm, "
              f"height {dh:+.1f} cm", flush=True)  # fmt: skip
    r = np.array(rows)
    loop_mean, final_mean, final_median = np.nanmean(r[:, 0]), r[:, 1].mean(), np.median(r[:, 1])
    print(f"{suite.name} {mode} [{first}:{last}]: V2V mean loop {loop_mean:.2f}, final {final_mean:.2f} cm "
          f"(median {final_median:.2f}), height {r[:, 2].mean():+.1f} cm")  # fmt: skip


if __name__ == "__main__":
    main()
