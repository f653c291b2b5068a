"""Per-scan screening: the bench's registration of each scan, its V2V and the fit's own summary.

    python scripts/scan_report.py SUITE_DIR all|I,J,...|A-B [THREADS]  # e.g. .cache/bench/wild_n32_s1000 0-16
    PLAN='{"heavy_anchor": 0.2}' python scripts/scan_report.py ...   # FitPlan fields other than the default
    LOOP='{"prior": "gaussian"}' python scripts/scan_report.py ...    # LoopFitConfig fields (all loop fits)
    SURFACE='{"pairs_every": 2}' python scripts/scan_report.py ...    # SurfaceFitConfig fields
    PER_PART=1 python scripts/scan_report.py ...                      # + V2V per body part (cm)

Prints per scan: id, kind, pose name, the scan's transform record; the orientation search's runner-up margin;
V2V (cm, as `loopreg bench`) of the final fit and of the loop fit it started from (the refit one in heavy
clothing), seconds and `fit_info` (method, orientation, loop-fit inliers, single view, frozen joints, ...);
then the means and failures (V2V > 5 cm). A diagnostic: it reads gt.json. Two processes of one thread screen
two suites (or two halves, 0-16 and 16-32) at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import loopreg.fit.pipeline as pipeline
from loopreg.bench.run import gt_body
from loopreg.body.parts import PART_NAMES
from loopreg.data.scan_io import load_scan
from loopreg.fit.export import transform


def picks(arg: str, n: int) -> list[int]:
    """Scan indices from `all`, `I,J,...` or a range `A-B` (B excluded)."""
    if arg == "all":
        return list(range(n))
    if "-" in arg:
        a, b = map(int, arg.split("-"))
        return list(range(a, min(b, n)))
    return [int(i) for i in arg.split(",")]


def main() -> None:
    suite = Path(sys.argv[1])
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    items = json.loads((suite / "index.json").read_text())["items"]
    model = pipeline.get_model(None, torch.device("cpu"))
    plan = pipeline.FitPlan(**json.loads(os.environ.get("PLAN", "{}")))
    plan.loop = replace(plan.loop, **json.loads(os.environ.get("LOOP", "{}")))
    plan.surface = replace(plan.surface, **json.loads(os.environ.get("SURFACE", "{}")))
    correspondences, surface_fit = pipeline.correspondences, pipeline.fit_surface
    loop_start: dict[str, torch.Tensor] = {}

    def with_margin(net, model, points, seed):  # the search's runner-up margin, printed
        out = correspondences(net, model, points, seed)
        print(f"   runner-up margin {float(out['runner_up'][1]):.2f}")
        return out

    def keeping_start(model_, scan, cfg=None, *args, init=None, **kwargs):  # the surface fit's start
        if init is not None and "params" not in loop_start:
            loop_start["params"] = {k: v.reshape(1, -1) for k, v in init.items()}
        return surface_fit(model_, scan, cfg, *args, init=init, **kwargs)

    pipeline.correspondences, pipeline.fit_surface = with_margin, keeping_start
    v2v, v2v_loop = [], []
    for i in picks(sys.argv[2], len(items)):  # one scan per iteration
        item = items[i]
        loop_start.clear()
        gt = json.loads((suite / item["gt"]).read_text())
        gt_vertices, _ = gt_body(model, gt)
        print(item["id"], item["kind"], gt["pose_name"], gt["scan"].get("transform"))
        t = time.perf_counter()
        summary, _ = pipeline.register_loaded(
            load_scan(suite / item["scan"]), pipeline.RegisterOptions(), plan=plan
        )
        seconds = time.perf_counter() - t
        to_scan, to_model = summary["normalisation"].to_scan, np.linalg.inv(np.asarray(gt["to_scan"]))

        def error_cm(vertices: torch.Tensor) -> np.ndarray:
            model_frame = transform(transform(vertices.double().numpy(), to_scan), to_model)  # noqa: B023
            return np.linalg.norm(model_frame - gt_vertices, axis=1) * 100  # noqa: B023

        err = error_cm(summary["fit"].vertices)
        v2v.append(float(err.mean()))
        if "params" in loop_start:
            with torch.no_grad():
                v2v_loop.append(float(error_cm(model(**loop_start["params"]).vertices[0]).mean()))
        loop = f" (loop fit {v2v_loop[-1]:.2f})" if "params" in loop_start else ""
        info = {k: round(v, 3) if isinstance(v, float) else v for k, v in summary["fit_info"].items()}
        print(f"   V2V {v2v[-1]:.2f} cm{loop}  {seconds:.1f}s", info, flush=True)
        if os.environ.get("PER_PART") == "1":
            labels = model.parts.numpy()
            per_part = {PART_NAMES[p]: round(float(err[labels == p].mean()), 1) for p in np.unique(labels)}
            print("   per part", per_part)
    v = np.array(v2v)
    loop = f" (loop fit {np.mean(v2v_loop):.3f}, {len(v2v_loop)} scans)" if v2v_loop else ""
    print(f"{suite.name}: {len(v)} scans, V2V mean {v.mean():.3f} cm{loop}, failures {(v > 5).sum()}")


if __name__ == "__main__":
    main()
