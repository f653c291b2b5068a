"""Per-scan screening: the bench's registration of each scan, its V2V and the fit's own summary.

    python scripts/scan_report.py SUITE_DIR all|I,J,... [THREADS]   # e.g. .cache/bench/wild_n32_s1000 8,19 1
    PLAN='{"heavy_anchor": 0.2}' python scripts/scan_report.py ...   # FitPlan fields other than the default
    PER_PART=1 python scripts/scan_report.py ...                      # + V2V per body part (cm)

Prints per scan: id, kind, pose name, the scan's transform record; the orientation search's runner-up margin;
V2V (cm, as `loopreg bench`), seconds and `fit_info` (method, orientation, loop-fit inliers, single view,
frozen joints, ...). A diagnostic: it reads gt.json. Two processes of one thread screen two suites at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import loopreg.fit.pipeline as pipeline
from loopreg.bench.run import gt_body
from loopreg.body.parts import PART_NAMES
from loopreg.data.scan_io import load_scan
from loopreg.fit.export import transform


def main() -> None:
    suite = Path(sys.argv[1])
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    items = json.loads((suite / "index.json").read_text())["items"]
    picks = range(len(items)) if sys.argv[2] == "all" else [int(i) for i in sys.argv[2].split(",")]
    model = pipeline.get_model(None, torch.device("cpu"))
    plan = pipeline.FitPlan(**json.loads(os.environ.get("PLAN", "{}")))
    correspondences = pipeline.correspondences

    def with_margin(net, model, points, seed):  # the search's runner-up margin, printed
        out = correspondences(net, model, points, seed)
        print(f"   runner-up margin {float(out['runner_up'][1]):.2f}")
        return out

    pipeline.correspondences = with_margin
    v2v = []
    for i in picks:  # one scan per iteration
        item = items[i]
        gt = json.loads((suite / item["gt"]).read_text())
        gt_vertices, _ = gt_body(model, gt)
        print(item["id"], item["kind"], gt["pose_name"], gt["scan"].get("transform"))
        t = time.perf_counter()
        summary, _ = pipeline.register_loaded(
            load_scan(suite / item["scan"]), pipeline.RegisterOptions(), plan=plan
        )
        fit, norm = summary["fit"], summary["normalisation"]
        to_model = np.linalg.inv(np.asarray(gt["to_scan"]))
        vertices = transform(transform(fit.vertices.double().numpy(), norm.to_scan), to_model)
        err = np.linalg.norm(vertices - gt_vertices, axis=1) * 100
        v2v.append(float(err.mean()))
        info = {k: round(v, 3) if isinstance(v, float) else v for k, v in summary["fit_info"].items()}
        print(f"   V2V {v2v[-1]:.2f} cm  {time.perf_counter() - t:.1f}s", info, flush=True)
        if os.environ.get("PER_PART") == "1":
            labels = model.parts.numpy()
            per_part = {PART_NAMES[p]: round(float(err[labels == p].mean()), 1) for p in np.unique(labels)}
            print("   per part", per_part)
    v = np.array(v2v)
    print(f"{suite.name}: {len(v)} scans, V2V mean {v.mean():.2f} cm, failures {(v > 5).sum()}")


if __name__ == "__main__":
    main()
