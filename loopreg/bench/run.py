"""`loopreg bench`: run registration on a synthetic suite and compute the contract's figures.

Every run also runs the baseline (surface fit from the rest pose, no learned correspondences) on
the same scans, so each report shows what the learned part buys.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from loopreg.body import BodyModel
from loopreg.data.scan_io import load_scan
from loopreg.fit.export import transform
from loopreg.fit.metrics import distance_summary, mpjpe_cm, point_to_surface
from loopreg.fit.pipeline import RegisterOptions, get_model, pick_device, register_loaded

FAILURE_V2V_CM = 5.0


@dataclass
class ScanResult:
    v2v_cm: float
    mpjpe_cm: float
    scan_to_body_mm: float
    seconds: float
    part_accuracy: float | None = None
    corr_err_cm: tuple[float, float] | None = None


@dataclass
class MethodOutput:
    """A method's fitted body vertices and joints and the scan points (scan frame), its seconds, and the
    network's predictions (scan-frame points, parts, canonical points) when it used the network."""

    vertices: np.ndarray
    joints: np.ndarray
    scan_points: np.ndarray
    seconds: float
    predicted: dict | None = None


Method = Callable[[Path, RegisterOptions], MethodOutput]


def run_pipeline(scan_path: Path, opts: RegisterOptions) -> MethodOutput:
    """The registration pipeline, as `loopreg register` runs it: load, fit, write every output file (to a
    temporary folder); returns body vertices and joints in the scan frame and the seconds of all that."""
    t = time.perf_counter()
    scan = load_scan(scan_path, opts.max_vertices)
    summary, write = register_loaded(scan, opts)
    with tempfile.TemporaryDirectory(prefix="loopreg-bench-") as out_dir:
        write(Path(out_dir))
    fit, norm = summary["fit"], summary["normalisation"]
    seconds = time.perf_counter() - t
    verts = transform(fit.vertices.cpu().double().numpy(), norm.to_scan)
    joints = transform(fit.joints.cpu().double().numpy(), norm.to_scan)
    pred = summary.get("correspondences")
    if pred is not None:
        pred = {**pred, "points": transform(pred["points"].astype(np.float64), norm.to_scan)}
    return MethodOutput(verts, joints, scan.points, seconds, pred)


def run_baseline(scan_path: Path, opts: RegisterOptions) -> MethodOutput:
    """The same fit without learned correspondences (surface fit from the rest pose)."""
    return run_pipeline(scan_path, replace(opts, network=False))


METHODS: dict[str, Method] = {"pipeline": run_pipeline, "baseline": run_baseline}


def gt_body(model: BodyModel, gt: dict) -> tuple[np.ndarray, np.ndarray]:
    def t(key: str) -> torch.Tensor:
        return torch.tensor([gt[key]], dtype=model.v_template.dtype, device=model.v_template.device)

    out = model(
        betas=t("betas"), global_orient=t("global_orient"), body_pose=t("body_pose"), transl=t("transl")
    )
    return out.vertices[0].detach().cpu().double().numpy(), out.joints[0].detach().cpu().double().numpy()


def evaluate(
    method: Method, suite_dir: Path, items: list[dict], opts: RegisterOptions, log=print
) -> list[ScanResult]:
    model = get_model(opts.model, pick_device(opts.device))
    faces = model.faces.cpu().numpy()
    results = []
    for item in items:
        gt = json.loads((suite_dir / item["gt"]).read_text())
        gt_v, gt_j = gt_body(model, gt)
        out = method(suite_dir / item["scan"], opts)
        to_model = np.linalg.inv(np.asarray(gt["to_scan"]))
        v, j = transform(out.vertices, to_model), transform(out.joints, to_model)
        scan_pts = transform(out.scan_points, to_model)
        s2b = point_to_surface(scan_pts, v, faces)
        res = ScanResult(
            v2v_cm=float(np.linalg.norm(v - gt_v, axis=1).mean() * 100),
            mpjpe_cm=mpjpe_cm(j, gt_j),
            scan_to_body_mm=float(s2b.mean() * 1000),
            seconds=out.seconds,
        )
        if out.predicted is not None:  # the network's labels against GT, as `loopreg train eval` does
            from loopreg.net.evaluate import gt_labels

            cpu_model = get_model(opts.model, torch.device("cpu"))
            part, canon = gt_labels(cpu_model, gt, out.predicted["points"])
            err = np.linalg.norm(out.predicted["canon"] - canon, axis=1) * 100
            res.part_accuracy = float((out.predicted["parts"] == part).mean())
            res.corr_err_cm = (float(err.mean()), float(np.median(err)))
        log(f"  {item['id']}: v2v {res.v2v_cm:.2f} cm, mpjpe {res.mpjpe_cm:.2f} cm, {out.seconds:.1f} s")
        results.append(res)
    return results


def summarise(results: list[ScanResult]) -> dict:
    v2v = np.array([r.v2v_cm for r in results])
    secs = np.array([r.seconds for r in results])
    parts = [r.part_accuracy for r in results if r.part_accuracy is not None]
    corr = [r.corr_err_cm for r in results if r.corr_err_cm is not None]
    return {
        "v2v_cm": distance_summary(v2v),
        "mpjpe_cm": {"mean": float(np.mean([r.mpjpe_cm for r in results]))},
        "scan_to_body_mm": {"mean": float(np.mean([r.scan_to_body_mm for r in results]))},
        "failure_rate": float((v2v > FAILURE_V2V_CM).mean()),
        "part_accuracy": float(np.mean(parts)) if parts else None,
        "corr_err_cm": {
            "mean": float(np.mean([c[0] for c in corr])),
            "median": float(np.median([c[1] for c in corr])),
        }
        if corr
        else None,
        "seconds_per_scan": {"median": float(np.median(secs)), "p95": float(np.percentile(secs, 95))},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def speed_probe(repeats: int = 5) -> dict:
    """Milliseconds (best of `repeats`) of two fixed workloads like the fit's: a 512x4096 by 4096x512
    float32 matmul and a KD-tree query of 10k points among 14k. This 2-core machine's speed varies by ~2-3x
    between phases (a noisy neighbour); the probe lets benches from different phases be compared."""
    from scipy.spatial import cKDTree

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(512, 4096, generator=gen), torch.rand(4096, 512, generator=gen)
    pts = np.random.default_rng(0).random((24000, 3))
    tree = cKDTree(pts[:14000])

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return round(min(times), 2)

    query = pts[14000:]
    return {"matmul_ms": best(lambda: a @ b), "kdtree_ms": best(lambda: tree.query(query, k=1, workers=-1))}


def machine_info(device: torch.device, probe_start: dict | None = None) -> dict:
    """The machine, with the speed probe at the start of the bench (when given) and now, at its end."""
    info = {
        "speed_probe_start": probe_start,
        "speed_probe_end": speed_probe(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device.type,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_bench(
    suite: str,
    n: int,
    seed: int,
    data_dir: Path | None = None,
    opts: RegisterOptions | None = None,
    log=print,
) -> dict:
    """Generate (or reuse) the suite, run the pipeline and the baseline, return the contract JSON."""
    from loopreg.data.synth import generate_suite

    opts = opts or RegisterOptions()
    suite_dir = data_dir or Path(".cache") / "bench" / f"{suite}_n{n}_s{seed}"
    index_path = suite_dir / "index.json"
    if not index_path.exists():
        log(f"generating suite {suite} (n={n}, seed={seed}) in {suite_dir}")
        generate_suite(suite, n, seed, suite_dir)
    items = json.loads(index_path.read_text())["items"]
    device = pick_device(opts.device)
    probe = speed_probe()
    log("baseline:")
    baseline = summarise(evaluate(METHODS["baseline"], suite_dir, items, opts, log))
    from loopreg.fit.pipeline import get_network

    method = "pipeline" if opts.network and get_network(device) is not None else "baseline"
    if method == "baseline":
        main = dict(baseline)  # no network weights: the pipeline is the baseline fit
    else:
        log("pipeline:")
        main = summarise(evaluate(METHODS["pipeline"], suite_dir, items, opts, log))
    machine = {**machine_info(device, probe), "register_threads": opts.threads}
    return {"suite": suite, "n": n, "seed": seed, "method": method, **main,
            "machine": machine, "baseline": baseline}  # fmt: skip


def markdown_table(report: dict) -> str:
    rows = [("method: " + report["method"], report), ("baseline", report["baseline"])]
    out = [
        "| run | V2V mean cm | V2V median cm | V2V p95 cm | MPJPE cm | scan-to-body mm | failures | "
        "part acc | corr err cm (mean/median) | s/scan median | s/scan p95 | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        corr, acc = r["corr_err_cm"], r["part_accuracy"]
        cells = [
            name,
            *(f"{r['v2v_cm'][k]:.2f}" for k in ("mean", "median", "p95")),
            f"{r['mpjpe_cm']['mean']:.2f}",
            f"{r['scan_to_body_mm']['mean']:.1f}",
            f"{r['failure_rate']:.0%}",
            "-" if acc is None else f"{acc:.1%}",
            "-" if corr is None else f"{corr['mean']:.2f} / {corr['median']:.2f}",
            *(f"{r['seconds_per_scan'][k]:.1f}" for k in ("median", "p95")),
            f"{r['peak_rss_mb']:.0f}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
