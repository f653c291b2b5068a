"""LoopReg's 14 body parts, derived from skinning weights for any SMPL-format model.

Arm parts follow LoopReg/IP-Net's split: upper_arm is SMPL's shoulder bone (shoulder to elbow),
mid_arm its elbow bone (elbow to wrist), forearm the wrist and hand bones (the distal end).
"""

from __future__ import annotations

import numpy as np

PART_NAMES: tuple[str, ...] = (
    "head", "torso",
    "left_upper_arm", "right_upper_arm", "left_mid_arm", "right_mid_arm",
    "left_forearm", "right_forearm", "left_upper_leg", "right_upper_leg",
    "left_leg", "right_leg", "left_foot", "right_foot",
)  # fmt: skip
NUM_PARTS = len(PART_NAMES)

# SMPL joint index -> part index (the part a joint's bone drives).
JOINT_TO_PART: tuple[int, ...] = (
    1,  # pelvis -> torso
    8, 9,  # hips -> upper legs
    1,  # spine1
    10, 11,  # knees -> legs
    1,  # spine2
    12, 13,  # ankles -> feet
    1,  # spine3
    12, 13,  # feet (toes) -> feet
    0,  # neck -> head
    1, 1,  # collars -> torso
    0,  # head
    2, 3,  # shoulders -> upper arms
    4, 5,  # elbows -> mid arms
    6, 7,  # wrists -> forearms
    6, 7,  # hands -> forearms
)  # fmt: skip

# Colours for part visualisation (RGB 0-255), one per part.
PART_COLORS = np.array(
    [
        [230, 200, 160],
        [120, 120, 200],
        [230, 80, 80],
        [80, 200, 80],
        [250, 150, 60],
        [60, 180, 180],
        [200, 60, 160],
        [140, 200, 60],
        [80, 80, 230],
        [230, 230, 70],
        [160, 90, 200],
        [90, 160, 230],
        [200, 120, 120],
        [120, 200, 160],
    ],
    dtype=np.uint8,
)


def joint_part_matrix(num_joints: int = 24) -> np.ndarray:
    """(J, 14) one-hot matrix mapping joints to parts."""
    if num_joints != len(JOINT_TO_PART):
        raise ValueError(f"parts are defined for SMPL's 24-joint tree, got {num_joints} joints")
    m = np.zeros((num_joints, NUM_PARTS), dtype=np.float32)
    m[np.arange(num_joints), JOINT_TO_PART] = 1.0
    return m


def part_weights(weights: np.ndarray) -> np.ndarray:
    """(V, 14) skinning weight summed per part."""
    return np.asarray(weights, dtype=np.float32) @ joint_part_matrix(weights.shape[1])


def vertex_parts(weights: np.ndarray) -> np.ndarray:
    """(V,) part label of each vertex: the part with the largest summed skinning weight."""
    return part_weights(weights).argmax(axis=1).astype(np.int64)
