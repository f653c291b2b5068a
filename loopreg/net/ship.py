"""Record shipped CorrNet weights in the model_store manifest (key "weights") and find them again."""

from __future__ import annotations

from pathlib import Path

import torch

from loopreg.body.data import file_sha256
from loopreg.body.registry import read_manifest, write_manifest
from loopreg.net.data import BETA_SEED, POSE_SEED, SCAN_SEED
from loopreg.net.recipes import describe
from loopreg.paths import MODEL_STORE

WEIGHTS_NAME = "corrnet"  # the default weights; "corrnet_cpu": the 2-hour CPU recipe's (kept, measured)


def ship(
    weights: Path,
    metrics: dict,
    note: str = "",
    name: str = WEIGHTS_NAME,
    store: Path = MODEL_STORE,
    recipe: str = "gpu",
) -> dict:
    """Add/replace the manifest entry of weights stored under `store` (sha256, config, seeds, metrics)."""
    weights = Path(weights).resolve()
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    meta = ckpt.get("meta", {})
    entry = {
        "file": str(weights.relative_to(store.resolve())),
        "sha256": file_sha256(weights),
        "bytes": weights.stat().st_size,
        "config": ckpt["config"],
        "data_seeds": {
            "betas": BETA_SEED,
            "poses": f"{POSE_SEED} + shard",
            "scanner": SCAN_SEED,
            "note": "all < 1000; the benchmark uses seed >= 1000",
        },  # fmt: skip
        "train": meta.get("train", {}),
        "val": meta.get("val", {}),
        "device": meta.get("device", ""),
        "metrics": metrics,
        "command": describe(recipe),
        "note": note,
    }
    manifest = read_manifest(store)
    manifest.setdefault("weights", {})[name] = entry
    write_manifest(manifest, store)
    return entry


def shipped_weights(name: str = WEIGHTS_NAME, store: Path = MODEL_STORE) -> Path | None:
    """Path of the shipped weights if the manifest lists them and the file is there, else None."""
    entry = read_manifest(store).get("weights", {}).get(name)
    if entry is None:
        return None
    path = store / entry["file"]
    return path if path.exists() else None
