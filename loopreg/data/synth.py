"""`loopreg synth`: synthetic humans with exact ground truth, written as scan files.

Shapes from anny's adult distribution (projected on the default model's betas), poses from the free
pose library, bodies posed with the default model (so model(gt params) is the GT body exactly), then
the scanner simulation of the suite. Deterministic for (suite, n, seed).

Layout: DIR/index.json, DIR/<id>/scan.<ply|obj>, DIR/<id>/gt.json, DIR/<id>/gt_body.ply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh

from loopreg.body import BodyModel
from loopreg.body.data import file_sha256
from loopreg.body.registry import resolve_model_path
from loopreg.data.poses import sample_poses
from loopreg.data.scanner import SUITES, Scan, simulate
from loopreg.data.shapes import sample_betas

SUITE_NAMES = ("minimal", "clothed", "partial", "wild")


def write_scan(scan: Scan, path_stem: Path, fmt: str) -> Path:
    """Write a scan as PLY (mesh or point cloud) or OBJ (meshes); returns the path."""
    if scan.is_mesh:
        mesh = trimesh.Trimesh(scan.vertices, scan.faces, process=False)
        path = path_stem.with_suffix(f".{fmt}")
        data = mesh.export(file_type=fmt)
    else:
        path = path_stem.with_suffix(".ply")
        data = trimesh.PointCloud(scan.vertices).export(file_type="ply")
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def generate_suite(
    suite: str, n: int, seed: int, out_dir: Path, progress: Callable[[str, float], None] | None = None
) -> Path:
    if suite not in SUITE_NAMES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITE_NAMES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = BodyModel.load()
    model_ref = {"name": model.data.name, "sha256": file_sha256(resolve_model_path())}
    betas = torch.as_tensor(sample_betas(n, seed, model.data))
    poses = sample_poses(n, seed)
    with torch.no_grad():
        bodies = model(betas=betas, global_orient=poses.global_orient, body_pose=poses.body_pose)
    faces = model.faces.numpy()
    parts = model.parts.numpy()
    items = []
    for i in range(n):  # one scan per iteration; each step inside is vectorised
        sid = f"{suite}_{seed}_{i:04d}"
        rng = np.random.default_rng([seed, i, SUITE_NAMES.index(suite)])
        verts = bodies.vertices[i].numpy().astype(np.float64)
        scan, to_scan, meta = simulate(verts, faces, parts, rng, SUITES[suite])
        d = out_dir / sid
        d.mkdir(exist_ok=True)
        scan_path = write_scan(scan, d / "scan", "obj" if i % 4 == 3 else "ply")
        trimesh.Trimesh(verts, faces, process=False).export(d / "gt_body.ply")
        gt = {
            "model": model_ref,
            "betas": betas[i].tolist(),
            "global_orient": poses.global_orient[i].tolist(),
            "body_pose": poses.body_pose[i].tolist(),
            "transl": [0.0, 0.0, 0.0],
            "to_scan": np.asarray(to_scan).tolist(),
            "units": meta["transform"].get("units", "m"),
            "up": meta["transform"].get("up_axis", "y"),
            "pose_name": poses.names[i],
            "scan": meta,
        }
        (d / "gt.json").write_text(json.dumps(gt, indent=1, sort_keys=True, default=_jsonable))
        items.append({"id": sid, "scan": f"{sid}/{scan_path.name}", "gt": f"{sid}/gt.json",
                      "gt_body": f"{sid}/gt_body.ply", "kind": meta["output"]})  # fmt: skip
        if progress:
            progress("synth", (i + 1) / n)
    index = {"suite": suite, "n": n, "seed": seed, "model": model_ref, "items": items}
    (out_dir / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    return out_dir


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
