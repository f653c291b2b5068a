"""Scan points -> body parts and canonical points: the orientation search, then CorrNet.

`Correspondence.predict(points)` takes one scan (N,3) in any orientation, position and scale: the
orientation search (`loopreg.net.orient`) finds the body's axes, CorrNet labels `points @ axes`
(canonically oriented), then `refine` turns the axes by the labels' own Procrustes rotation and labels
again. Canonical points live in the rest template's frame, so they need no rotating back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from loopreg.fit.init import robust_procrustes
from loopreg.net.evaluate import rotation_error_deg
from loopreg.net.model import CorrNet
from loopreg.net.orient import runner_up, search

# Refinement: the search's grid (30 degree turns about a few up axes) leaves 10-30 degrees on bent bodies,
# the edge of CorrNet's training jitter (25 degrees). The Procrustes rotation of the predicted canonical
# points of the torso and upper legs onto the points says how far the body's root is from the axes.
# Measured (n=32 bench suites, seed 1000, mean orientation error deg / canonical error mean cm, one pass):
# wild 13.8 / 4.52 -> 5.9 / 4.16, partial 10.1 / 4.08 -> 8.4 / 3.74; all points instead: 7.8 / 4.19 and
# 10.2 / 3.99; torso alone 8.1 / 4.22 and 8.8 / 3.70; a second round 5.5 / 4.14 and 9.2 / 3.80 (a /tmp
# script; scripts/label_study.py measures the shipped choice).
REFINE_PARTS = (1, 8, 9)  # torso, upper legs
REFINE_MIN_POINTS = 50
REFINE_MAX_DEG = 45.0  # a larger turn means the labels are not to be trusted: keep the search's axes
# Labels at the refined axes: PASSES random PASS_POINTS-point subsets (one batch), probabilities averaged,
# each point's canonical point the mean of the passes' regressions of its winning part (predict_oriented).
# Clothed n=64 seed 1000, first 24 scans, 4096 points per pass, part accuracy / median / mean cm: 1 pass
# 95.4 % / 1.72 / 2.42; median of the blended points of 2 passes 95.8 / 1.56 / 2.26, 3: 96.0 / 1.49 /
# 2.20, 4: 96.1 / 1.48 / 2.16 (4 with 8 degree turns: 2.17; 8: 2.12). Aggregations of 4 passes, first 32
# scans, clothed / partial n=32 mean cm: one pass 2.45 / 3.74, median of the blends 2.17 / 3.54, their mean
# 2.19 / 3.60, the winning part's regressions 2.11 / 3.46 (scripts/label_study.py). Denser sets instead
# (one pass of all 10k points: 93.0 % / 2.81 / 3.92) are worse: CorrNet trained on 2560-point sets.
PASSES = 4
# Points per pass: CorrNet trained on 2048-2560-point sets. Held-out n=64 seed 1000, 4 passes, one thread,
# 2026-11-27 (part accuracy / median / mean cm): 4096 -> 2560 points clothed (first 32) 95.9 % / 1.47 /
# 2.11 -> 95.8 / 1.49 / 2.14, wild (first 32) 92.6 / 1.98 / 4.43 -> 92.7 / 1.78 / 4.20. The refinement's
# pass needs only the torso's rotation: 1024 points, partial 92.5 / 2.02 / 3.96 -> 92.6 / 2.02 / 3.89, wild
# 93.7 / 1.74 / 3.61 -> 93.6 / 1.76 / 3.63 (2560 -> 1024). Then 2560 -> 2048 (for issue 4's 0.3 s; ~0.03 s):
# clothed 95.6 / 1.52 / 2.28 -> 95.4 / 1.57 / 2.37, wild 93.6 / 1.76 / 3.63 -> 93.6 / 1.77 / 3.62 (all 64).
PASS_POINTS = 2048
REFINE_POINTS = 1024


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
def predict(net: CorrNet, points: np.ndarray, seed: int = 0, passes: int = PASSES) -> Prediction:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    axes, scores, H = search(net, p, seed)
    parts, canon, prob, axes = predict_axes(net, p, axes, seed, passes=passes)
    alt = runner_up(H, scores)
    return Prediction(parts, canon, prob, axes, float(scores.max()), H[alt].T, float(scores[alt]))


@torch.no_grad()
def predict_axes(
    net: CorrNet,
    points: np.ndarray,
    axes: np.ndarray,
    seed: int = 0,
    refine: bool = True,
    passes: int = PASSES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CorrNet's labels of `points @ axes` (parts, canonical points, probabilities), after one refinement of
    the axes when `refine`, from `passes` subsets; returns the labels and the axes they were made with."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if refine:
        parts, canon, prob = net.predict_oriented((p @ axes).astype(np.float32), seed, 1, REFINE_POINTS)
        turn = refinement(p @ axes, parts, canon, prob)
        if turn is None and passes == 1:
            return parts, canon, prob, axes
        axes = axes if turn is None else axes @ turn
    parts, canon, prob = net.predict_oriented((p @ axes).astype(np.float32), seed, passes, PASS_POINTS)
    return parts, canon, prob, axes


def refinement(
    oriented: np.ndarray, parts: np.ndarray, canon: np.ndarray, prob: np.ndarray
) -> np.ndarray | None:
    """(3,3) rotation R with `oriented @ R` closer to the body's root frame: the robust Procrustes rotation
    of the torso and upper-leg canonical points onto their points; None when too few points or the turn
    exceeds REFINE_MAX_DEG."""
    keep = np.isin(parts, REFINE_PARTS)
    if keep.sum() < REFINE_MIN_POINTS:
        return None
    c, o = canon[keep].astype(np.float64), oriented[keep].astype(np.float64)
    size = np.sqrt(((o - o.mean(0)) ** 2).sum(1).mean() / max(((c - c.mean(0)) ** 2).sum(1).mean(), 1e-12))
    # points not in metres (a raw scan in cm or mm): to the canonical size, as the robust scale is 10 cm
    if not 0.5 < size < 2.0:
        o = o / size
    R, _, _ = robust_procrustes(c, o, prob.max(1)[keep])
    return R if rotation_error_deg(R, np.eye(3)) <= REFINE_MAX_DEG else None
