"""Find body models: the shipped default, manifest names, or a user's file path."""

from __future__ import annotations

import json
from pathlib import Path

from loopreg.body.data import BodyModelData, file_sha256
from loopreg.paths import MODEL_STORE

DEFAULT_MODEL = "loopreg_default"
MANIFEST = "manifest.json"


def read_manifest(store: Path = MODEL_STORE) -> dict:
    path = store / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"models": {}, "weights": {}}


def write_manifest(manifest: dict, store: Path = MODEL_STORE) -> None:
    (store / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def resolve_model_path(model: str | Path | None = None, store: Path = MODEL_STORE) -> Path:
    """A manifest name (default: the free model) or a path to an .npz/.pkl file."""
    name = str(model) if model is not None else DEFAULT_MODEL
    entry = read_manifest(store)["models"].get(name)
    if entry is not None:
        path = store / entry["file"]
    else:
        path = Path(name).expanduser()
    if not path.exists():
        from loopreg.body.smpl_import import missing_model_message

        raise FileNotFoundError(missing_model_message(path))
    return path


def load_model_data(model: str | Path | None = None, store: Path = MODEL_STORE) -> BodyModelData:
    path = resolve_model_path(model, store)
    data = BodyModelData.load(path)
    data.meta.setdefault("sha256", file_sha256(path))
    return data


def model_info(model: str | Path | None = None, store: Path = MODEL_STORE) -> dict:
    """The contract fields of `loopreg model info --json`."""
    path = resolve_model_path(model, store)
    data = BodyModelData.load(path)
    return {
        "name": data.name,
        "path": str(path),
        "num_vertices": data.num_vertices,
        "num_faces": int(data.faces.shape[0]),
        "num_joints": data.num_joints,
        "num_betas": data.num_betas,
        "license": data.meta.get("license", "unknown"),
        "sha256": file_sha256(path),
    }
