"""scan -> normalise -> (correspond) -> fit -> export: one registration, with progress reports.

Until the correspondence network lands (issue #4) the fit is the surface fit from the rest pose
under several yaw hypotheses (the benchmark's baseline); the network plugs in before `fit`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from loopreg.body import BodyModel
from loopreg.body.parts import PART_NAMES
from loopreg.data.normalise import normalise
from loopreg.data.poses import limit_violation
from loopreg.data.scan_io import DEFAULT_MAX_VERTICES, Scan, load_scan
from loopreg.fit import export
from loopreg.fit.metrics import closest_triangles, distance_summary
from loopreg.fit.surface import SurfaceFitConfig, fit_surface

Progress = Callable[[str, float], None]
FIT_POINTS = 3000


@dataclass
class RegisterOptions:
    units: str = "auto"
    up: str = "auto"
    offsets: bool = False
    model: str | None = None
    device: str = "auto"
    max_vertices: int = DEFAULT_MAX_VERTICES
    seed: int = 0
    network: bool = True  # use the shipped correspondence network when its weights exist

    @classmethod
    def from_dict(cls, d: dict) -> RegisterOptions:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


_MODELS: dict[tuple[str | None, str], BodyModel] = {}


def get_model(name: str | None, device: torch.device) -> BodyModel:
    """Body models are loaded once per process and reused across jobs."""
    key = (name, str(device))
    if key not in _MODELS:
        _MODELS[key] = BodyModel.load(name).to(device)
    return _MODELS[key]


_NETWORKS: dict[str, object] = {}


def get_network(device: torch.device):
    """The shipped correspondence network, loaded once per process (None without weights)."""
    if str(device) not in _NETWORKS:
        from loopreg.net import load_corrnet

        _NETWORKS[str(device)] = load_corrnet(str(device))
    return _NETWORKS[str(device)]


def correspondences(net, model: BodyModel, points: np.ndarray, seed: int) -> dict:
    """Predicted canonical points for the fit points, their confidence, and a robust Procrustes pose."""
    from scipy.spatial.transform import Rotation

    from loopreg.fit.init import robust_procrustes

    _, canon, prob = net.predict(points, seed=seed)
    conf = prob.max(1)
    R, t, _ = robust_procrustes(canon.astype(np.float64), points.astype(np.float64), conf)
    j0 = model.rest().joints[0, 0].detach().cpu().double().numpy()
    transl = t - j0 + R @ j0  # smplx rotates about the root joint
    init = (
        torch.as_tensor(Rotation.from_matrix(R).as_rotvec(), dtype=torch.float32),
        torch.as_tensor(transl, dtype=torch.float32),
    )
    return {
        "corr": torch.as_tensor(canon, dtype=torch.float32),
        "corr_weights": torch.as_tensor(conf, dtype=torch.float32),
        "extra_init": init,
    }


def register_loaded(
    scan: Scan,
    options: RegisterOptions,
    progress: Progress | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[dict, Callable[[Path], dict]]:
    """Register an already loaded scan; returns the fit summary and a writer for the output folder.

    `timings` may hold earlier stages (e.g. loading); the report's total includes them.
    """
    report = progress or (lambda stage, frac: None)
    timings = dict(timings or {})
    t = time.perf_counter()
    device = pick_device(options.device)
    model = get_model(options.model, device)
    norm = normalise(scan.points, options.units, options.up)
    pts = norm.apply(scan.points)
    rng = np.random.default_rng(options.seed)
    sub = pts[rng.choice(len(pts), size=min(FIT_POINTS, len(pts)), replace=False)]
    timings["normalise"] = time.perf_counter() - t
    report("normalise", 1.0)

    scan_t = torch.as_tensor(sub, dtype=torch.float32)
    net = get_network(device) if options.network else None
    corr = {}
    if net is not None:
        t = time.perf_counter()
        corr = correspondences(net, model, sub, options.seed)
        timings["correspond"] = time.perf_counter() - t
        report("correspond", 1.0)
    t = time.perf_counter()
    fit = fit_surface(
        model, scan_t, SurfaceFitConfig(), progress=report, pose_penalty=limit_violation, **corr
    )
    timings["fit"] = time.perf_counter() - t
    method = (
        "network correspondences (rigid init) + surface fit" if net is not None else "surface fit (baseline)"
    )

    def write(out_dir: Path) -> dict:
        t0 = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        to_scan = norm.to_scan
        faces = model.faces.cpu().numpy()
        body = fit.vertices.cpu().numpy().astype(np.float64)
        body_scan = export.transform(body, to_scan)
        params = export.write_params(
            out_dir / "params.json", fit, to_scan, model.data.meta, norm.units, norm.up
        )
        export.write_mesh(out_dir / "body.obj", body_scan, faces)
        tri, dist = closest_triangles(pts, body, faces)
        labels = model.parts.cpu().numpy()[faces[tri, 0]]
        export.write_scan_parts(out_dir / "scan_parts.ply", scan.points, scan.faces, labels)
        export.write_preview(out_dir / "preview.png", pts, body, faces)
        timings["export"] = time.perf_counter() - t0
        timings["total"] = sum(timings.values())
        rep = {
            "scan_to_body_mm": distance_summary(dist, 1000.0),
            "scan_to_body_offsets_mm": None,
            "per_part_mm": {PART_NAMES[p]: float(dist[labels == p].mean() * 1000) for p in np.unique(labels)},
            "timings_s": timings,
            "device": f"{device.type} ({platform.machine()})",
            "num_scan_points": int(len(scan.points)),
            "method": method,
        }
        (out_dir / "report.json").write_text(json.dumps(rep, indent=1))
        report("export", 1.0)
        return {"params": params, "report": rep}

    return {"fit": fit, "normalisation": norm}, write


def register_scan(
    scan_path: Path, out_dir: Path, options: dict | RegisterOptions, progress: Progress | None = None
) -> dict:
    """The worker's and CLI's entry point: read, register, write the contract's files."""
    opts = options if isinstance(options, RegisterOptions) else RegisterOptions.from_dict(options)
    t = time.perf_counter()
    scan = load_scan(scan_path, opts.max_vertices)
    load_s = time.perf_counter() - t
    if progress:
        progress("load", 1.0)
    _, write = register_loaded(scan, opts, progress, timings={"load": load_s})
    return write(Path(out_dir))["report"]
