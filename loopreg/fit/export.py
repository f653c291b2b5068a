"""Write registration results in the scan's own frame and units (contract: ARCHITECTURE.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import trimesh

from loopreg.body.parts import PART_COLORS
from loopreg.viz.render import grid, render_mesh, save_png, splat


def transform(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


def write_params(path: Path, fit, to_scan: np.ndarray, model_meta: dict, units: str, up: str) -> dict:
    params = {
        "model": {"name": model_meta.get("name"), "sha256": model_meta.get("sha256")},
        "betas": fit.betas.tolist(),
        "global_orient": fit.global_orient.tolist(),
        "body_pose": fit.body_pose.tolist(),
        "transl": fit.transl.tolist(),
        "to_scan": to_scan.tolist(),
        "units": units,
        "up": up,
        "gender": model_meta.get("gender", "neutral"),
        "joints_scan": transform(fit.joints.cpu().numpy().astype(np.float64), to_scan).tolist(),
    }
    path.write_text(json.dumps(params, indent=1))
    np.savez(path.with_suffix(".npz"), **{k: np.asarray(v) for k, v in params.items() if k not in ("model",)})
    return params


MESH_FORMATS = ("obj", "ply", "glb")  # body meshes; OBJ is always written (the contract's body.obj)
PREVIEW_SAMPLES = 150_000  # body surface samples per preview view: no gaps in a 480x360 tile


def parse_formats(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Mesh formats from "obj,ply" or a sequence, lower-cased, in order, without repeats.

    Raises ValueError naming the first unknown format (the CLI turns it into exit code 2).
    """
    items = value.split(",") if isinstance(value, str) else list(value or ())
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        fmt = item.lower().lstrip(".")
        if not fmt:
            continue
        if fmt not in MESH_FORMATS:
            choices = ",".join(MESH_FORMATS)
            raise ValueError(f"unknown mesh format {item!r} in formats (choose from {choices})")
        if fmt not in out:
            out.append(fmt)
    return tuple(out) or ("obj",)


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    trimesh.Trimesh(vertices, faces, process=False).export(path)


def write_meshes(
    out_dir: Path, stem: str, vertices: np.ndarray, faces: np.ndarray, formats: Iterable[str] = ("obj",)
) -> list[Path]:
    """`stem`.obj, plus `stem`.ply / `stem`.glb when asked for; the paths written."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    paths = [out_dir / f"{stem}.{fmt}" for fmt in ("obj", *(f for f in formats if f != "obj"))]
    for path in paths:
        mesh.export(path)
    return paths


def write_scan_parts(path: Path, points: np.ndarray, faces: np.ndarray | None, labels: np.ndarray) -> None:
    colors = np.concatenate([PART_COLORS[labels], np.full((len(labels), 1), 255, np.uint8)], 1)
    if faces is not None:
        trimesh.Trimesh(points, faces, vertex_colors=colors, process=False).export(path)
    else:
        trimesh.PointCloud(points, colors=colors).export(path)


def write_preview(path: Path, scan_model: np.ndarray, body_model: np.ndarray, faces: np.ndarray) -> None:
    """Front and side views (model frame) of the fitted body with the scan points overlaid."""
    from loopreg.viz.render import VIEWS

    lo = np.minimum(scan_model.min(0), body_model.min(0))
    hi = np.maximum(scan_model.max(0), body_model.max(0))
    tiles = []
    for view in ("front", "side"):
        R = VIEWS[view]
        b = body_model @ R.T
        s = scan_model[:: max(1, len(scan_model) // 60000)] @ R.T
        corners = (
            np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
            @ R.T
        )
        bounds = (corners.min(0), corners.max(0))
        img = render_mesh(b, faces, view="front", size=(480, 360), n_points=PREVIEW_SAMPLES, bounds=bounds)
        # scan points blended in orange over the body
        scan_img, _ = splat(
            s, np.tile(np.array([[240, 140, 40]], np.uint8), (len(s), 1)), (480, 360), bounds, 0
        )
        mask = np.any(scan_img != 255, axis=-1)
        img[mask] = (0.5 * img[mask] + 0.5 * scan_img[mask]).astype(np.uint8)
        tiles.append(img)
    save_png(grid(tiles, 2), path)
