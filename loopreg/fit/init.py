"""Initialisation from correspondences: robust (IRLS) weighted Procrustes of canonical onto scan points."""

from __future__ import annotations

import numpy as np


def weighted_procrustes(
    src: np.ndarray, dst: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Similarity (R, t, s) minimising sum w |s R src + t - dst|^2 (Umeyama, weighted)."""
    w = w / max(w.sum(), 1e-12)
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    var = float(w @ (a**2).sum(1))
    s = float(np.trace(np.diag(S) @ D) / max(var, 1e-12))
    return R, mu_d - s * R @ mu_s, s


def robust_procrustes(
    src: np.ndarray, dst: np.ndarray, w: np.ndarray, scale_m: float = 0.1, iters: int = 8
) -> tuple[np.ndarray, np.ndarray, float]:
    """IRLS with Geman-McClure weights, so wrong correspondences (other body side, clothing) count less."""
    weights = np.asarray(w, dtype=np.float64)
    R, t, s = weighted_procrustes(src, dst, weights)
    for _ in range(iters):
        r2 = ((s * src @ R.T + t - dst) ** 2).sum(1)
        robust = weights * (scale_m**2 / (scale_m**2 + r2)) ** 2
        R, t, s = weighted_procrustes(src, dst, robust)
    return R, t, s
