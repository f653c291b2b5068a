"""Orientation stage: turn a scan so its body stands up (+y) and faces +z before CorrNet labels it.

A search over rotation hypotheses scored by CorrNet's orientation head (`CorrNet.score`, trained to tell
canonically oriented bodies, within the training jitter, from wrongly oriented ones). Hypotheses: every
candidate up axis (the frame's +-y, which the normaliser's up rule set, and the points' +-longest principal
axis, for scans in any orientation) times `n_yaw` turns about it. Each is scored on a small random subset,
the best `TOP` again on `SUBSETS - 1` more (mean logit), in batches; the best wins. Learning one detector and
rotating the input is far easier than regressing the facing direction (which we tried: 69 degrees median
error after 300 CPU steps).
"""

from __future__ import annotations

import numpy as np
import torch

from loopreg.data.normalise import rotation_to_y
from loopreg.geometry import sphere_directions
from loopreg.net.model import CorrNet

# Since the labels refine the axes (correspond.refinement, up to 45 degrees), a coarser search does:
# 8 turns, the best 4 re-scored on one more subset, 14 ups when widened (was 12 turns, 12 re-scored on 2
# more subsets, 26 ups): held-out n=32 (first 32 of n=64 seed 1000, 4 passes of 2560 points) part accuracy
# / median / mean cm clothed 95.8 % / 1.49 / 2.14 -> 95.9 / 1.48 / 2.13, wild 92.7 / 1.78 / 4.20 -> 92.7 /
# 1.77 / 4.25; the search's time 0.17 -> 0.06 s (2 threads).
N_YAW = 8  # turns about each up axis
SUBSETS = 2  # the score of one 256-point subset is noisy: on hard scans the winner changes with the subset
TOP = 4  # hypotheses re-scored on the other subsets
WIDEN_BELOW = 3.0  # best logit below this: widen the search (correct orientations score ~9-14, some ~1)
WIDE_UPS = 14  # up axes of the widened search (Fibonacci sphere), x n_yaw turns each
CHUNK = 8  # clouds per scoring batch on CPU: 2.4 ms per cloud in 8s, 3.9 ms in one batch of 72 (2 cores)


def up_candidates(points: np.ndarray, min_deg: float = 25.0) -> np.ndarray:
    """(U,3) unit vectors: +-y (the normaliser's up rule), and +-the longest principal axis of the points
    when it differs from y by more than min_deg (a scan in any orientation: a standing body's long axis)."""
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(points) // 5000)], full_matrices=False)
    y = np.array([0.0, 1.0, 0.0])
    if np.degrees(np.arccos(min(1.0, abs(float(vt[0] @ y))))) <= min_deg:
        return np.stack([y, -y])
    return np.stack([y, -y, vt[0], -vt[0]])


def hypotheses(ups: np.ndarray, n_yaw: int) -> np.ndarray:
    """(U*n_yaw,3,3) rotations input -> canonical guess: align each up with +y, then turn about y."""
    a = np.arange(n_yaw) * 2 * np.pi / n_yaw
    c, s, z, o = np.cos(a), np.sin(a), np.zeros(n_yaw), np.ones(n_yaw)
    yaw = np.stack([c, z, s, z, o, z, -s, z, c], 1).reshape(n_yaw, 3, 3)
    align = np.stack([rotation_to_y(u) for u in ups])
    return (yaw[None] @ align[:, None]).reshape(-1, 3, 3)


@torch.no_grad()
def search(
    net: CorrNet,
    points: np.ndarray,
    seed: int = 0,
    n_yaw: int = N_YAW,
    n_subsets: int = SUBSETS,
    top: int = TOP,
    widen_below: float | None = WIDEN_BELOW,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best orientation of one scan (N,3): (3,3) body axes (left, up, forward) as columns in the input
    frame, so `points @ axes` is canonically oriented; the scores (H,) of all hypotheses and the hypotheses
    (H,3,3) (input -> canonical guess; `H[h].T` its axes). Every hypothesis is scored on one random subset,
    the `top` best again on `n_subsets - 1` more (their score: the mean logit); the winner is among those.
    When the winner scores below `widen_below` (no hypothesis looks like a body: e.g. a body bent forward,
    whose long axis is not its up), WIDE_UPS up axes all round the sphere are scored the same way too."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    n = min(net.cfg.score_points, len(p))
    subs = np.stack([p[rng.choice(len(p), size=n, replace=False)] for _ in range(n_subsets)])
    subs = subs - subs.mean(1, keepdims=True)
    H = hypotheses(up_candidates(p), n_yaw)
    dev = next(net.parameters()).device
    was_training = net.training
    net.eval()

    def score(R: np.ndarray, clouds: np.ndarray) -> np.ndarray:  # (h,3,3) x (s,n,3) -> (h,s) logits
        x = torch.as_tensor(np.einsum("hij,snj->hsni", R, clouds), dtype=torch.float32).reshape(-1, n, 3)
        step = CHUNK if dev.type == "cpu" else len(x)
        logits = torch.cat([net.score(x[i : i + step].to(dev)) for i in range(0, len(x), step)])
        return logits.reshape(len(R), len(clouds)).cpu().numpy()

    def rank(H: np.ndarray) -> np.ndarray:  # all on the first subset, the best `top` on all of them
        scores = score(H, subs[:1])[:, 0]
        best = np.argsort(-scores)[: min(top, len(H))]
        if n_subsets > 1:
            scores[best] = (scores[best] + score(H[best], subs[1:]).sum(1)) / n_subsets
            scores[np.setdiff1d(np.arange(len(H)), best)] -= 1e-3  # ties go to the re-scored ones
        return scores

    scores = rank(H)
    if widen_below is not None and scores.max() < widen_below:  # unsure: try ups all round the sphere
        wide = hypotheses(sphere_directions(WIDE_UPS), n_yaw)
        H, scores = np.concatenate([H, wide]), np.concatenate([scores, rank(wide)])
    net.train(was_training)
    return H[int(scores.argmax())].T, scores, H


def runner_up(H: np.ndarray, scores: np.ndarray, min_deg: float = 90.0) -> int:
    """Index of the best hypothesis at least `min_deg` away from the winner (e.g. the body facing back);
    its score against the winner's tells how ambiguous the search was."""
    best = H[int(scores.argmax())]
    cos = (np.einsum("hij,ij->h", H, best) - 1) / 2  # cos of the angle between each and the winner
    far = np.flatnonzero(cos <= np.cos(np.radians(min_deg)))
    return int(far[scores[far].argmax()])
