"""Render meshes and point clouds to images with a z-buffered point splat (vectorised numpy)."""

from __future__ import annotations

import numpy as np

from loopreg.geometry import face_normals, sample_surface

VIEWS = {"front": np.eye(3), "side": np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])}  # side: look from +x


def splat(
    points: np.ndarray,
    colors: np.ndarray,
    size: tuple[int, int],
    bounds: tuple[np.ndarray, np.ndarray],
    radius: int = 1,
    background: tuple[int, int, int] = (255, 255, 255),
    image: np.ndarray | None = None,
    depth: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer points (camera looks down -z, y up) into an RGB image; returns (image, depth)."""
    h, w = size
    lo, hi = bounds
    scale = 0.95 * min((w - 1) / max(hi[0] - lo[0], 1e-9), (h - 1) / max(hi[1] - lo[1], 1e-9))
    centre = (lo + hi) / 2
    px = np.round((points[:, 0] - centre[0]) * scale + (w - 1) / 2).astype(np.int64)
    py = np.round((centre[1] - points[:, 1]) * scale + (h - 1) / 2).astype(np.int64)
    if image is None:
        image = np.empty((h, w, 3), np.uint8)
        image[:] = background
        depth = np.full(h * w, -np.inf)
    order = np.argsort(points[:, 2], kind="stable")  # later writes win: nearest (largest z) last
    px, py, zs, colors = px[order], py[order], points[order, 2], colors[order]
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            x, y = px + dx, py + dy
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            flat, z, col = y[ok] * w + x[ok], zs[ok], colors[ok]
            closer = z >= depth[flat]
            depth[flat[closer]] = z[closer]
            image.reshape(-1, 3)[flat[closer]] = col[closer]
    return image, depth


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    view: str = "front",
    size: tuple[int, int] = (512, 384),
    color: tuple[int, int, int] | np.ndarray = (180, 190, 220),
    n_points: int = 250_000,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Lambert-shaded render of a mesh (y up); color is one RGB or per-face (F,3)."""
    R = VIEWS[view]
    v = vertices @ R.T
    pts, face = sample_surface(v, faces, n_points)
    shade = np.clip(face_normals(v, faces)[face] @ np.array([0.3, 0.4, 0.87]), 0.15, 1.0)
    base = np.asarray(color, dtype=np.float64)
    base = base[face] if base.ndim == 2 else np.broadcast_to(base, (len(pts), 3))
    cols = (base * shade[:, None]).astype(np.uint8)
    if bounds is None:
        bounds = (v.min(0), v.max(0))
    return splat(pts, cols, size, bounds)[0]


def save_png(image: np.ndarray, path) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


def grid(images: list[np.ndarray], cols: int) -> np.ndarray:
    """Tile equally sized images into a contact sheet."""
    h, w, _ = images[0].shape
    rows = (len(images) + cols - 1) // cols
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    return sheet
