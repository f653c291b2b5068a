"""Read scans (meshes or point clouds) from files, with clear errors for bad input.

Formats: OBJ, PLY, STL, OFF, GLB/GLTF (scenes flattened, textures ignored) as meshes or point
clouds; XYZ (text, x y z per line) and NPY ((N,3) array) as point clouds. No remote loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MESH_FORMATS = {".obj", ".ply", ".stl", ".off", ".glb", ".gltf"}
POINT_FORMATS = {".xyz", ".npy"}
SUPPORTED = MESH_FORMATS | POINT_FORMATS
MIN_POINTS = 500
DEFAULT_MAX_VERTICES = 2_000_000
MAX_EXTENT = 1e5  # larger than any human in mm by far


class ScanError(ValueError):
    """A scan file that cannot be used, with a message naming the problem."""


@dataclass
class Scan:
    points: np.ndarray  # (N,3) float64 vertices
    faces: np.ndarray | None = None  # (F,3) int64 or None for point clouds

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None and len(self.faces) > 0


def _ply_header_count(path: Path, max_vertices: int) -> None:
    """Refuse a PLY whose header declares more vertices than allowed, before parsing it."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head.startswith(b"ply"):
        raise ScanError(f"{path.name}: not a PLY file (no 'ply' magic)")
    for line in head.split(b"\n"):
        parts = line.split()
        if len(parts) == 3 and parts[:2] == [b"element", b"vertex"]:
            try:
                count = int(parts[2])
            except ValueError as exc:
                raise ScanError(f"{path.name}: PLY header has a bad vertex count") from exc
            if count > max_vertices:
                raise ScanError(f"{path.name}: {count} vertices exceeds the limit of {max_vertices}")
            return
    raise ScanError(f"{path.name}: PLY header declares no vertices")


def _load_points(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ScanError(f"{path.name}: not a readable .npy array ({exc})") from exc
    else:
        try:
            arr = np.loadtxt(path, usecols=(0, 1, 2), ndmin=2)
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ScanError(f"{path.name}: not an XYZ text point cloud ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ScanError(f"{path.name}: expected an (N, 3) array of points, got shape {arr.shape}")
    return np.asarray(arr[:, :3], dtype=np.float64)


def _load_mesh(path: Path) -> Scan:
    import trimesh

    try:
        loaded = trimesh.load(path, force=None, process=False)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise ScanError(
            f"{path.name}: unreadable {path.suffix.lower()} file ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if hasattr(g, "vertices")] if loaded.geometry else []
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh)]
        if meshes:
            loaded = trimesh.util.concatenate(meshes)
        elif geoms:
            loaded = trimesh.PointCloud(np.concatenate([np.asarray(g.vertices) for g in geoms]))
        else:
            raise ScanError(f"{path.name}: the file holds no geometry")
    points = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = getattr(loaded, "faces", None)
    faces = None if faces is None or len(faces) == 0 else np.asarray(faces, dtype=np.int64)
    return Scan(points, faces)


def load_scan(path: str | Path, max_vertices: int = DEFAULT_MAX_VERTICES) -> Scan:
    """Load and validate a scan; raises ScanError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ScanError(f"{path}: no such file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED:
        raise ScanError(
            f"{path.name}: unknown scan format '{ext}' (supported: {', '.join(sorted(SUPPORTED))})"
        )
    if path.stat().st_size == 0:
        raise ScanError(f"{path.name}: the file is empty")
    if ext == ".ply":
        _ply_header_count(path, max_vertices)
    scan = Scan(_load_points(path)) if ext in POINT_FORMATS else _load_mesh(path)
    return validate_scan(scan, path.name, max_vertices)


def validate_scan(scan: Scan, name: str = "scan", max_vertices: int = DEFAULT_MAX_VERTICES) -> Scan:
    n = len(scan.points)
    if n == 0:
        raise ScanError(f"{name}: the scan has no points")
    if n > max_vertices:
        raise ScanError(f"{name}: {n} vertices exceeds the limit of {max_vertices}")
    if not np.all(np.isfinite(scan.points)):
        raise ScanError(f"{name}: the scan has non-finite (NaN or infinite) coordinates")
    if n < MIN_POINTS:
        raise ScanError(f"{name}: only {n} points; a body scan needs at least {MIN_POINTS}")
    extent = float(np.ptp(scan.points, axis=0).max())
    if not 1e-3 < extent < MAX_EXTENT:
        raise ScanError(f"{name}: absurd extent {extent:g} (expected a human in m, cm or mm)")
    if scan.faces is not None and (scan.faces.min() < 0 or scan.faces.max() >= n):
        raise ScanError(f"{name}: faces index vertices that do not exist")
    return scan
