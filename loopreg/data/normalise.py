"""Bring a scan into the model frame: metres, y up, centred; remember the way back.

Documented rules (overridable with --units / --up):
- units: by the largest bounding-box extent L of the scan: L < 4 -> metres, L < 400 -> cm, else mm
  (a human is 0.5-2.5 m tall or wide).
- up: the axis with the largest extent among y and z if it is at least 85% of the overall largest
  extent (scans are y-up or z-up by convention), else the longest principal axis; the sign is +.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNIT_SCALE = {"m": 1.0, "cm": 100.0, "mm": 1000.0}
AXES = {"x": 0, "y": 1, "z": 2}


@dataclass
class Normalisation:
    """to_model maps scan-frame points to the model frame (metres, y up, centred); to_scan inverts it."""

    to_model: np.ndarray  # (4,4) similarity
    units: str
    up: str

    @property
    def to_scan(self) -> np.ndarray:
        return np.linalg.inv(self.to_model)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.to_model[:3, :3].T + self.to_model[:3, 3]


def detect_units(points: np.ndarray) -> str:
    extent = float(np.ptp(points, axis=0).max())
    return "m" if extent < 4 else "cm" if extent < 400 else "mm"


def detect_up(points: np.ndarray) -> str:
    ext = np.ptp(points, axis=0)
    yz = 1 + int(ext[2] > ext[1])
    if ext[yz] >= 0.85 * ext.max():
        return "+" + "xyz"[yz]
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(points) // 20000)], full_matrices=False)
    axis = int(np.abs(vt[0]).argmax())
    return "+" + "xyz"[axis]


def up_rotation(up: str) -> np.ndarray:
    """Rotation taking the scan's up axis to +y (right-handed, proper rotation)."""
    u = np.zeros(3)
    u[AXES[up.lstrip("+-")]] = -1.0 if up.startswith("-") else 1.0
    return rotation_to_y(u)


def rotation_to_y(u: np.ndarray) -> np.ndarray:
    """Proper rotation taking unit vector u to +y (Rodrigues; 180 degrees about x for u = -y)."""
    y = np.array([0.0, 1.0, 0.0])
    v, c = np.cross(u, y), float(u @ y)
    if c < -0.9999:
        return np.diag([1.0, -1.0, -1.0])
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + K + K @ K / (1 + c)


def normalise(points: np.ndarray, units: str = "auto", up: str = "auto") -> Normalisation:
    units = detect_units(points) if units == "auto" else units
    up = detect_up(points) if up == "auto" else (up if up[0] in "+-" else "+" + up)
    if units not in UNIT_SCALE:
        raise ValueError(f"units must be auto, m, cm or mm, not {units!r}")
    if up.lstrip("+-") not in AXES:
        raise ValueError(f"up must be auto or one of x, y, z, -x, -y, -z, not {up!r}")
    R = up_rotation(up) / UNIT_SCALE[units]
    lo, hi = (points @ R.T).min(0), (points @ R.T).max(0)
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -(lo + hi) / 2
    return Normalisation(T, units, up)
