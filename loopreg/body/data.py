"""The body model file format: SMPL's arrays in a chumpy-free .npz, plus a few extras.

Arrays (V vertices, F faces, J=24 joints, B betas, P=(J-1)*9 pose-blend coefficients):
  v_template (V,3) f (F,3) weights (V,J) shapedirs (V,3,B) posedirs (V,3,P) J_regressor (J,V)
  kintree_table (2,J)  -- SMPL's names, so the same file also loads with smplx.
Extras: parts (V,) int part label 0..13, vertex_ids (json: smplx extra-joint vertex ids),
meta (json: name, license, source, gender, units).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip

# smplx's VertexJointSelector reads these names (face, feet and fingertip keypoints).
EXTRA_VERTEX_NAMES: tuple[str, ...] = (
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)  # fmt: skip


class ModelFormatError(ValueError):
    """A body model file is missing arrays or has inconsistent shapes."""


@dataclass
class BodyModelData:
    """Plain arrays of an SMPL-style body model (float32 / int64, numpy)."""

    v_template: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    parents: np.ndarray
    parts: np.ndarray | None = None
    vertex_ids: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "unnamed"))

    def validate(self) -> BodyModelData:
        """Check shapes and values; raise ModelFormatError naming the problem."""
        V, J = self.num_vertices, self.num_joints
        expect = {
            "v_template": (V, 3),
            "weights": (V, J),
            "J_regressor": (J, V),
        }
        for key, shape in expect.items():
            if getattr(self, key).shape != shape:
                raise ModelFormatError(f"{key} has shape {getattr(self, key).shape}, expected {shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ModelFormatError(f"faces has shape {self.faces.shape}, expected (F, 3)")
        if self.faces.min() < 0 or self.faces.max() >= V:
            raise ModelFormatError("faces index vertices out of range")
        if self.shapedirs.ndim != 3 or self.shapedirs.shape[:2] != (V, 3):
            raise ModelFormatError(f"shapedirs has shape {self.shapedirs.shape}, expected ({V}, 3, B)")
        if self.posedirs.shape != (V, 3, (J - 1) * 9):
            raise ModelFormatError(
                f"posedirs has shape {self.posedirs.shape}, expected ({V}, 3, {(J - 1) * 9})"
            )
        if (
            self.parents[0] != -1
            or np.any(self.parents[1:] >= np.arange(1, J))
            or np.any(self.parents[1:] < 0)
        ):
            raise ModelFormatError("parents must start with -1 and list each joint after its parent")
        for key in ("v_template", "weights", "shapedirs", "posedirs", "J_regressor"):
            if not np.all(np.isfinite(getattr(self, key))):
                raise ModelFormatError(f"{key} has non-finite values")
        if self.parts is not None and self.parts.shape != (V,):
            raise ModelFormatError(f"parts has shape {self.parts.shape}, expected ({V},)")
        return self

    def with_meta(self, **meta) -> BodyModelData:
        return replace(self, meta={**self.meta, **meta})

    # --- file format -------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        kintree = np.stack([self.parents, np.arange(self.num_joints)]).astype(np.int64)
        kintree[0, 0] = 4294967295  # SMPL stores the root's parent as uint32 -1
        arrays = {
            "v_template": self.v_template.astype(np.float32),
            "f": self.faces.astype(np.int64),
            "weights": self.weights.astype(np.float32),
            "shapedirs": self.shapedirs.astype(np.float32),
            "posedirs": self.posedirs.astype(np.float32),
            "J_regressor": self.J_regressor.astype(np.float32),
            "kintree_table": kintree,
            "vertex_ids": np.array(json.dumps(self.vertex_ids, sort_keys=True)),
            "meta": np.array(json.dumps(self.meta, sort_keys=True)),
        }
        if self.parts is not None:
            arrays["parts"] = self.parts.astype(np.int8)
        return arrays

    def save(self, path: str | Path) -> str:
        """Write a compressed .npz deterministically; return its sha256."""
        buf = io.BytesIO()
        _savez_deterministic(buf, self.to_arrays())
        data = buf.getvalue()
        Path(path).write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def from_arrays(cls, arrays: dict) -> BodyModelData:
        required = ("v_template", "f", "weights", "shapedirs", "posedirs", "J_regressor", "kintree_table")
        missing = [k for k in required if k not in arrays]
        if missing:
            raise ModelFormatError(f"model file lacks arrays: {', '.join(missing)}")
        J_reg = arrays["J_regressor"]
        if hasattr(J_reg, "toarray"):  # scipy sparse in official SMPL files
            J_reg = J_reg.toarray()
        kintree = np.asarray(arrays["kintree_table"]).astype(np.int64)
        parents = kintree[0].copy()
        parents[0] = -1
        parts = arrays.get("parts")
        data = cls(
            v_template=np.asarray(arrays["v_template"], dtype=np.float32),
            faces=np.asarray(arrays["f"]).astype(np.int64),
            weights=np.asarray(arrays["weights"], dtype=np.float32),
            shapedirs=np.asarray(arrays["shapedirs"], dtype=np.float32),
            posedirs=np.asarray(arrays["posedirs"], dtype=np.float32),
            J_regressor=np.asarray(J_reg, dtype=np.float32),
            parents=parents,
            parts=None if parts is None else np.asarray(parts).astype(np.int64),
            vertex_ids=_json_field(arrays, "vertex_ids", {}),
            meta=_json_field(arrays, "meta", {}),
        )
        return data.validate()

    @classmethod
    def load(cls, path: str | Path) -> BodyModelData:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(path)
        if path.suffix == ".pkl":
            raise ModelFormatError(
                f"{path} is an SMPL pickle: convert it once with `loopreg model import-smpl {path}` "
                "and pass the .npz it writes"
            )
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{path} is not a readable .npz body model: {exc}") from exc
        data = cls.from_arrays(arrays)
        data.meta.setdefault("name", path.stem)
        return data


def _json_field(arrays: dict, key: str, default):
    if key not in arrays:
        return default
    return json.loads(str(np.asarray(arrays[key]).reshape(-1)[0]))


def _savez_deterministic(fileobj, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed stamps zip entries with the current time; fix it so rebuilds hash the same."""
    import zipfile

    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, buf.getvalue())


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
