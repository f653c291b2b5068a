"""INTERIM registration, used only while `loopreg.fit.pipeline.register_scan` does not exist.

It does not fit pose or shape: it places the default body model's rest-pose mesh into the scan frame by
matching bounding boxes (up axis = longest extent unless given, uniform scale by height) and writes the
contract files, with honest scan-to-body distances. It exists so the service can be built and tested
end to end; the worker switches to the real pipeline as soon as that module is importable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

from loopreg.body import BodyModel

MIN_POINTS = 500
UNITS_PER_M = {"m": 1.0, "cm": 100.0, "mm": 1000.0}
HUMAN_HEIGHT_M = (0.3, 3.0)  # allowed height in metres (children, crouching and partial scans included)
METRIC_POINTS = 20_000
AXES = {"x": 0, "y": 1, "z": 2}


class ScanError(ValueError):
    """The scan cannot be registered; the message tells the user why."""


def load_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices (N, 3) and faces (F, 3) or None for a point cloud."""
    ext = path.suffix.lower().lstrip(".")
    try:
        if ext == "npy":
            arr = np.load(path, allow_pickle=False)
            return np.asarray(arr[:, :3], dtype=np.float64), None
        geom = trimesh.load(path, file_type=ext, process=False)
    except Exception as exc:  # trimesh raises many types for broken files
        raise ScanError(f"could not read the {ext.upper()} file: {exc}") from exc
    if isinstance(geom, trimesh.Scene):
        geoms = list(geom.dump()) if geom.geometry else []
        if not geoms:
            raise ScanError("the file contains no geometry")
        geom = trimesh.util.concatenate(geoms) if len(geoms) > 1 else geoms[0]
    vertices = np.asarray(getattr(geom, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = getattr(geom, "faces", None)
    faces = np.asarray(faces) if faces is not None and len(faces) else None
    return vertices, faces


def validate(points: np.ndarray) -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ScanError(f"expected 3D points, got an array of shape {points.shape}")
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise ScanError(
            f"the scan has {bad} vertices with NaN or infinite coordinates; clean it and resubmit"
        )
    n = len(np.unique(points.round(9), axis=0)) if len(points) < 5 * MIN_POINTS else len(points)
    if n < MIN_POINTS:
        raise ScanError(f"the scan has {n} distinct points; at least {MIN_POINTS} are needed")
    extent = np.sort(points.max(0) - points.min(0))
    if not np.isfinite(extent).all():
        raise ScanError("the scan's coordinates overflow (extent is infinite); check its units and values")
    if extent[1] <= 1e-3 * extent[2]:
        raise ScanError("the scan's points lie on a line or a single spot; a human scan has width and height")


def scan_units(height: float, units: str) -> str:
    """The scan's units: given, or the one in which its height looks human."""
    if units != "auto":
        h = height / UNITS_PER_M[units]
        if not HUMAN_HEIGHT_M[0] <= h <= HUMAN_HEIGHT_M[1]:
            raise ScanError(
                f"the scan is {h:.3g} m tall in units={units}; a human scan is 0.3-3 m: check units"
            )
        return units
    for name in ("m", "cm", "mm"):
        if 0.5 <= height / UNITS_PER_M[name] <= 2.6:
            return name
    raise ScanError(
        f"the scan's extent ({height:.4g}) is not a human height in m, cm or mm; pass units and check it"
    )


def up_axis(extent: np.ndarray, up: str) -> tuple[int, float]:
    if up == "auto":
        return int(np.argmax(extent)), 1.0
    return AXES[up[-1]], -1.0 if up.startswith("-") else 1.0


def placement(body: np.ndarray, scan: np.ndarray, up: str) -> tuple[np.ndarray, float, np.ndarray]:
    """Rotation R, scale s, translation t with scan ~= s R body + t (bounding boxes matched)."""
    lo, hi = scan.min(0), scan.max(0)
    axis, sign = up_axis(hi - lo, up)
    rest = [a for a in range(3) if a != axis]
    width = max(rest, key=lambda a: (hi - lo)[a])
    R = np.zeros((3, 3))
    R[axis, 1] = sign  # model +y -> scan up
    R[width, 0] = 1.0  # model +x -> the scan's wider horizontal axis
    R[:, 2] = np.cross(R[:, 0], R[:, 1])
    b_lo, b_hi = body.min(0), body.max(0)
    s = float((hi - lo)[axis] / (b_hi - b_lo)[1])
    t = (lo + hi) / 2 - s * R @ ((b_lo + b_hi) / 2)
    return R, s, t


class InterimPipeline:
    """Callable with the signature of register_scan; body models are loaded once per process."""

    def __init__(self, preload: bool = True) -> None:
        self._models: dict[str | None, BodyModel] = {}
        if preload:
            self.model(None)

    def model(self, name: str | None) -> BodyModel:
        if name not in self._models:
            self._models[name] = BodyModel.load(name)
        return self._models[name]

    def __call__(
        self, scan_path: Path, out_dir: Path, options: dict, progress: Callable[[str, float], None]
    ) -> dict:
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def stage(name: str, fraction: float) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = now - clock
            clock = now
            progress(name, fraction)

        t0 = clock
        progress("load", 0.0)
        points, faces = load_points(scan_path)
        stage("load", 0.1)
        validate(points)
        extent = points.max(0) - points.min(0)
        axis, _ = up_axis(extent, options.get("up", "auto"))
        units = scan_units(float(extent[axis]), options.get("units", "auto"))
        stage("validate", 0.2)

        model = self.model(options.get("model"))
        out = model.rest()
        body = out.vertices[0].detach().cpu().numpy().astype(np.float64)
        joints = out.joints[0].detach().cpu().numpy().astype(np.float64)
        body_faces = model.faces.detach().cpu().numpy()
        R, s, t = placement(body, points, options.get("up", "auto"))
        body_scan = body @ (s * R).T + t
        stage("fit", 0.6)

        mesh = trimesh.Trimesh(body_scan, body_faces, process=False)
        rng = np.random.default_rng(0)
        sample = (
            points if len(points) <= METRIC_POINTS else points[rng.choice(len(points), METRIC_POINTS, False)]
        )
        _, dist, tri = trimesh.proximity.closest_point(mesh, sample)
        mm = dist * 1000.0 / UNITS_PER_M[units]
        parts = model.parts.cpu().numpy()
        sample_parts = parts[body_faces[tri, 0]]
        stage("metrics", 0.8)

        out_dir.mkdir(parents=True, exist_ok=True)
        to_scan = np.eye(4)
        to_scan[:3, :3], to_scan[:3, 3] = s * R, t
        up_name = options.get("up", "auto")
        up_name = (
            ("+" + "xyz"[axis]) if up_name == "auto" else (up_name if up_name[0] == "-" else "+" + up_name)
        )
        mesh_in = (points, faces, parts)
        _write_outputs(out_dir, model, body, body_faces, mesh_in, to_scan, joints, units, up_name, options)
        stats = _stats(mm)
        report = {
            "scan_to_body_mm": stats,
            "scan_to_body_offsets_mm": stats if options.get("offsets") else None,
            "per_part_mm": _per_part(mm, sample_parts),
            "timings_s": {
                **timings,
                "export": time.perf_counter() - clock,
                "total": time.perf_counter() - t0,
            },
            "device": "cpu",
            "num_scan_points": int(len(points)),
            "pipeline": "interim",
            "notes": [
                "INTERIM: rest-pose default body placed by bounding box; no pose/shape fit, zero offsets"
            ],
        }
        (out_dir / "report.json").write_text(json.dumps(report, indent=2))
        stage("export", 1.0)
        return {"scan_to_body_mm": stats, "pipeline": "interim"}


def _write_outputs(out_dir, model, body, body_faces, mesh_in, to_scan, joints, units, up, options):
    from scipy.spatial import cKDTree

    from loopreg.body.parts import PART_COLORS
    from loopreg.viz.render import render_mesh, save_png

    points, faces, parts = mesh_in
    params = {
        "model": {"name": model.data.name, "sha256": str(model.data.meta.get("sha256", ""))},
        "betas": [0.0] * model.num_betas,
        "global_orient": [0.0] * 3,
        "body_pose": [0.0] * (3 * (model.num_joints - 1)),
        "transl": [0.0] * 3,
        "to_scan": to_scan.tolist(),
        "units": units,
        "up": up,
        "gender": str(model.data.meta.get("gender", "neutral")),
        "joints_scan": (joints @ to_scan[:3, :3].T + to_scan[:3, 3]).tolist(),
        "pipeline": "interim",
    }
    (out_dir / "params.json").write_text(json.dumps(params, indent=2))
    body_scan = body @ to_scan[:3, :3].T + to_scan[:3, 3]
    mesh = trimesh.Trimesh(body_scan, body_faces, process=False)
    mesh.export(out_dir / "body.obj")
    if options.get("offsets"):
        mesh.export(out_dir / "body_offsets.obj")
    _, nearest = cKDTree(body_scan).query(points)
    colors = np.c_[PART_COLORS[parts[nearest]], np.full(len(points), 255)].astype(np.uint8)
    if faces is not None:
        trimesh.Trimesh(points, faces, vertex_colors=colors, process=False).export(out_dir / "scan_parts.ply")
    else:
        trimesh.PointCloud(points, colors=colors).export(out_dir / "scan_parts.ply")
    save_png(render_mesh(body, body_faces, n_points=60_000), out_dir / "preview.png")


def _stats(mm: np.ndarray) -> dict[str, float]:
    return {"mean": float(mm.mean()), "median": float(np.median(mm)), "p95": float(np.percentile(mm, 95))}


def _per_part(mm: np.ndarray, parts: np.ndarray) -> dict[str, float]:
    from loopreg.body.parts import PART_NAMES

    return {name: float(mm[parts == i].mean()) for i, name in enumerate(PART_NAMES) if (parts == i).any()}
