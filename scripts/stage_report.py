"""Per-scan screening by stage: V2V after the loop fit and after the final fit, as `loopreg bench` scores it.

    python scripts/stage_report.py SUITE_DIR all|I,J,...|A-B      # e.g. .cache/bench/wild_n32_s1000 0-16
    PLAN='{"heavy_share": 0.25}' python scripts/stage_report.py ...  # FitPlan fields other than the default
    LOOP_OW=0.01 ...        # LoopFitConfig.outside_weight for every loop fit;  THREADS=1 (default 2)

Prints per scan: id, V2V (cm) of the loop-fit body (the refit one in heavy clothing) and of the final fit,
seconds, single view or not, the outside share and the loop fit's inliers; then the means and failures
(V2V > 5 cm). A diagnostic: it reads gt.json. Two processes of one thread each screen two halves at once.
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
from loopreg.data.scan_io import load_scan
from loopreg.fit.export import transform


def picks(arg: str, n: int) -> list[int]:
    if arg == "all":
        return list(range(n))
    if "-" in arg:
        a, b = map(int, arg.split("-"))
        return list(range(a, min(b, n)))
    return [int(i) for i in arg.split(",")]


def v2v(vertices: torch.Tensor, to_scan, to_model, gt_vertices: np.ndarray) -> float:
    model_frame = transform(transform(vertices.double().numpy(), to_scan), to_model)
    return float((np.linalg.norm(model_frame - gt_vertices, axis=1) * 100).mean())


def main() -> None:
    suite = Path(sys.argv[1])
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    items = json.loads((suite / "index.json").read_text())["items"]
    model = pipeline.get_model(None, torch.device("cpu"))
    plan = pipeline.FitPlan(**json.loads(os.environ.get("PLAN", "{}")))
    if os.environ.get("LOOP_OW"):
        plan.loop = replace(plan.loop, outside_weight=float(os.environ["LOOP_OW"]))
    captured: dict[str, torch.Tensor] = {}
    surface_fit = pipeline.fit_surface

    def keep_loop_body(model_, scan, cfg=None, *args, init=None, **kwargs):  # the surface fit's start
        if init is not None and "loop" not in captured:
            with torch.no_grad():
                captured["loop"] = model_(**{k: v.reshape(1, -1) for k, v in init.items()}).vertices[0]
        return surface_fit(model_, scan, cfg, *args, init=init, **kwargs)

    pipeline.fit_surface = keep_loop_body
    rows = []
    for i in picks(sys.argv[2], len(items)):  # one scan per iteration
        captured.clear()
        item = items[i]
        gt = json.loads((suite / item["gt"]).read_text())
        gt_vertices, _ = gt_body(model, gt)
        t = time.perf_counter()
        summary, _ = pipeline.register_loaded(
            load_scan(suite / item["scan"]), pipeline.RegisterOptions(), plan=plan
        )
        seconds = time.perf_counter() - t
        to_scan, to_model = summary["normalisation"].to_scan, np.linalg.inv(np.asarray(gt["to_scan"]))
        loop = v2v(captured["loop"], to_scan, to_model, gt_vertices) if "loop" in captured else float("nan")
        final = v2v(summary["fit"].vertices, to_scan, to_model, gt_vertices)
        info = summary["fit_info"]
        rows.append((loop, final))
        flags = f"single={info.get('single_view')} share={info.get('outside_share', 0):.2f}"
        flags += f" inliers={info.get('inliers', 0):.2f}"
        print(f"{item['id']} loop {loop:.2f} final {final:.2f} {seconds:.1f}s {flags}", flush=True)
    r = np.array(rows)
    print(f"mean loop {np.nanmean(r[:, 0]):.3f} final {r[:, 1].mean():.3f} failures {(r[:, 1] > 5).sum()}")


if __name__ == "__main__":
    main()
