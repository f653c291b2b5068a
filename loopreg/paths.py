"""Where the project keeps its files: shipped model store and a local cache."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_STORE = Path(os.environ.get("LOOPREG_MODEL_STORE", PROJECT_ROOT / "model_store"))
CACHE_DIR = Path(os.environ.get("LOOPREG_CACHE_DIR", PROJECT_ROOT / ".cache"))


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache, created on demand."""
    path = CACHE_DIR.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
