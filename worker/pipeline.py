"""Pick the registration pipeline once per worker process: the real one if importable, else the interim."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

Pipeline = Callable[[Path, Path, dict, Callable[[str, float], None]], dict]
REAL = "loopreg.fit.pipeline"
log = logging.getLogger("loopreg.worker")


def load_pipeline(mode: str = "auto") -> tuple[Pipeline, str]:
    """(callable, name). mode: auto | full | interim.

    The real module may expose `load_pipeline()` returning a ready callable (models loaded, warmed up);
    otherwise its `register_scan` is used as is.
    """
    if mode != "interim":
        try:
            module: Any = importlib.import_module(REAL)
        except ModuleNotFoundError as exc:
            if mode == "full" or exc.name not in (REAL, "loopreg.fit"):
                raise
            log.warning("%s is not available yet: using the INTERIM pipeline (no pose/shape fit)", REAL)
        else:
            if hasattr(module, "load_pipeline"):
                return module.load_pipeline(), "full"
            return module.register_scan, "full"
    from worker.interim import InterimPipeline

    return InterimPipeline(), "interim"
