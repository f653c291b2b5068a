"""Mesh helpers shared by the scanner simulation, the renderers and the fits (numpy, vectorised)."""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def face_normals(v: np.ndarray, f: np.ndarray, unit_length: bool = True) -> np.ndarray:
    """(F,3) face normals; unnormalised ones have twice the face area as length."""
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return unit(n) if unit_length else n


def sample_surface(
    v: np.ndarray, f: np.ndarray, n: int, rng: np.random.Generator | int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """n area-weighted random points on a mesh and the face of each."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    area = np.linalg.norm(face_normals(v, f, unit_length=False), axis=1)
    cdf = np.cumsum(area)
    face = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1]), len(f) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    return np.einsum("nc,nck->nk", bary, v[f[face]]), face


def sphere_directions(n: int) -> np.ndarray:
    """n near-uniform unit vectors (a Fibonacci sphere), (n,3) float64."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = i * np.pi * (3 - np.sqrt(5))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
