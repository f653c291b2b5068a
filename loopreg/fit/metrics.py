"""Accuracy figures: vertex-to-vertex, joint error, scan-to-body surface distance."""

from __future__ import annotations

import numpy as np

from loopreg.body.field import ClosestTriangle


def v2v_cm(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-vertex distance in cm between same-topology meshes given in metres."""
    return float(np.linalg.norm(pred - gt, axis=-1).mean() * 100)


def mpjpe_cm(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.linalg.norm(pred - gt, axis=-1).mean() * 100)


def closest_triangles(
    points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, rtol: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Closest triangle of the mesh and the distance to it, for each point (same units; exact, or with
    rtol > 0 a triangle within (1 + rtol) of the closest distance: see `ClosestTriangle.query`)."""
    return ClosestTriangle(vertices, faces).query(points, rtol)


def point_to_surface(
    points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, rtol: float = 0.0
) -> np.ndarray:
    """Distance of each point to the closest point on the mesh surface (same units; rtol as above)."""
    return closest_triangles(points, vertices, faces, rtol)[1]


def distance_summary(d: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    d = np.asarray(d) * scale
    return {"mean": float(d.mean()), "median": float(np.median(d)), "p95": float(np.percentile(d, 95))}
