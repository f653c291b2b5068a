"""Correspondence network: per-point part labels and canonical points, warm start and loop training.

Use: `net = load_corrnet()` (the shipped weights, or None), then
`pred = net.predict(points)` for one scan's points (N,3) in any frame and units (a `Prediction`:
parts, canon, prob, axes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopreg.net.model import CorrNet


def load_corrnet(device: str = "cpu") -> CorrNet | None:
    """The shipped CorrNet (model_store manifest key "weights" -> "corrnet") in eval mode, or None.
    LOOPREG_CORRNET=path overrides the shipped file (to try other weights in the pipeline or bench)."""
    import os

    from loopreg.net.ship import shipped_weights
    from loopreg.net.train import load_weights

    path = os.environ.get("LOOPREG_CORRNET") or shipped_weights()
    return None if path is None else load_weights(path, device)
