"""Extra keypoint vertex ids (face, feet, fingertips) for meshes that are not SMPL's.

smplx's defaults are SMPL vertex ids, wrong for any other mesh. These are picked by geometry on the
rest T-pose (y up, facing +z, left = +x), which every SMPL-format model shares.
"""

from __future__ import annotations

import numpy as np

from loopreg.body.data import BodyModelData
from loopreg.body.parts import vertex_parts


def _argbest(ids: np.ndarray, score: np.ndarray) -> int:
    return int(ids[np.argmax(score)])


def guess_vertex_ids(data: BodyModelData) -> dict[str, int]:
    v = data.v_template.astype(np.float64)
    parts = data.parts if data.parts is not None else vertex_parts(data.weights)
    J = data.J_regressor @ v
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ids: dict[str, int] = {}

    head = np.flatnonzero((parts == 0) & (y > J[12, 1]))
    if head.size == 0:
        head = np.flatnonzero(parts == 0)
    ids["nose"] = _argbest(head, z[head])
    n = v[ids["nose"]]
    half_width = max(np.abs(x[head]).max(), 1e-3)
    for key, sign in (("leye", 1.0), ("reye", -1.0)):
        target = np.array([sign * 0.35 * half_width, n[1] + 0.3 * half_width])
        d = np.hypot(x[head] - target[0], y[head] - target[1])
        ids[key] = _argbest(head, -d + 0.2 * z[head])
    eye_y = v[ids["leye"], 1]
    band = head[np.abs(y[head] - eye_y) < 0.4 * half_width]
    ids["lear"] = _argbest(band, x[band])
    ids["rear"] = _argbest(band, -x[band])

    for side, sign, foot_part in (("L", 1.0, 12), ("R", -1.0, 13)):
        foot = np.flatnonzero(parts == foot_part)
        front = foot[z[foot] > z[foot].max() - 0.03]
        ids[f"{side}BigToe"] = _argbest(front, -sign * x[front] + z[front])
        ids[f"{side}SmallToe"] = _argbest(front, sign * x[front] + z[front])
        low = foot[y[foot] < y[foot].min() + 0.03]
        ids[f"{side}Heel"] = _argbest(low, -z[low])

    for side, sign, wrist in (("l", 1.0, 20), ("r", -1.0, 21)):
        hand = np.flatnonzero((parts == 6 + (side == "r")) & (sign * x > sign * J[wrist, 0] + 0.02))
        ids[f"{side}thumb"] = _argbest(hand, z[hand] + 0.3 * sign * x[hand])
        reach = sign * x[hand]
        order = hand[np.argsort(-reach)]
        order = order[z[order] < z[ids[f"{side}thumb"]] - 0.01]
        tips: list[int] = []
        for i in order:  # greedy: furthest-reaching vertices at least 1.2 cm apart across the hand
            if all(abs(z[i] - z[t]) > 0.012 for t in tips):
                tips.append(int(i))
                if len(tips) == 4:
                    break
        for i in order:  # tiny meshes: fill up without the spacing rule
            if len(tips) == 4:
                break
            if int(i) not in tips:
                tips.append(int(i))
        tips += [tips[-1]] * (4 - len(tips)) if tips else [ids[f"{side}thumb"]] * 4
        tips.sort(key=lambda t: z[t])  # palms down: pinky at the back, index at the front
        for finger, tip in zip(("pinky", "ring", "middle", "index"), tips, strict=False):
            ids[f"{side}{finger}"] = tip
    return ids
