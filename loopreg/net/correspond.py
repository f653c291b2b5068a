"""Scan points -> body parts and canonical points: the orientation search, then CorrNet.

`Correspondence.predict(points)` takes one scan (N,3) in any orientation, position and scale: the
orientation search (`loopreg.net.orient`) finds the body's axes, CorrNet labels `points @ axes`
(canonically oriented). Canonical points live in the rest template's frame, so they need no rotating back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from loopreg.net.model import CorrNet
from loopreg.net.orient import runner_up, search


@dataclass
class Prediction:
    parts: np.ndarray  # (N,) part index
    canon: np.ndarray  # (N,3) canonical point (rest template frame, metres)
    prob: np.ndarray  # (N,14) part probabilities
    axes: np.ndarray  # (3,3) body axes (left, up, forward) as columns, in the input frame
    orientation_score: float  # the winning hypothesis' logit
    runner_up_axes: np.ndarray  # (3,3) the best hypothesis >= 90 degrees from the winner (e.g. facing back)
    runner_up_score: float  # its logit: close to the winner's = an ambiguous orientation


@torch.no_grad()
def predict(net: CorrNet, points: np.ndarray, seed: int = 0) -> Prediction:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    axes, scores, H = search(net, p, seed)
    parts, canon, prob = net.predict_oriented((p @ axes).astype(np.float32), seed)
    alt = runner_up(H, scores)
    return Prediction(parts, canon, prob, axes, float(scores.max()), H[alt].T, float(scores[alt]))
