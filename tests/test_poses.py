import math

import pytest
import torch

from loopreg.body import SMPL_JOINT_NAMES
from loopreg.data.poses import (
    BODY_JOINT_NAMES,
    LIMITS_HI,
    LIMITS_LO,
    POSE_NAMES,
    STANDING_POSES,
    TWIST_AXIS,
    angles_to_pose,
    clamp_to_limits,
    library_poses,
    limit_violation,
    mirror_pose,
    pose_to_angles,
    sample_poses,
)

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
B = {n: i for i, n in enumerate(BODY_JOINT_NAMES)}
TOL = 1e-4


def random_poses(n: int, seed: int, scale: float = 1.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 69, generator=g) * 2 - 1) * scale


def joint_pose(joint: str, axis: int, deg: float) -> torch.Tensor:
    angles = torch.zeros(1, 23, 3)
    angles[0, B[joint], axis] = math.radians(deg)
    return angles_to_pose(angles)


def inside(body_pose: torch.Tensor) -> torch.Tensor:
    a = pose_to_angles(body_pose)
    return ((a >= LIMITS_LO - TOL) & (a <= LIMITS_HI + TOL)).flatten(1).all(1)


# --- joint angles and limits ------------------------------------------------------------------------------
def test_angles_round_trip_and_small_angles_match_axis_angle():
    a = (torch.rand(500, 23, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 1.4
    assert torch.allclose(pose_to_angles(angles_to_pose(a)), a, atol=1e-5)
    small = random_poses(8, 1, scale=1e-3)
    assert torch.allclose(pose_to_angles(small).reshape(8, 69), small, atol=1e-6)
    twist = torch.zeros(1, 23, 3)
    twist[0, torch.arange(23), torch.tensor(TWIST_AXIS)] = 0.7  # pure twists stay pure twists
    assert torch.allclose(pose_to_angles(angles_to_pose(twist)), twist, atol=1e-6)


def test_limits_are_mirror_symmetric_and_one_way_hinges():
    assert (LIMITS_LO < LIMITS_HI).all()
    sign = torch.tensor([1.0, -1.0, -1.0])
    perm = [
        B[n.replace("left_", "#").replace("right_", "left_").replace("#", "right_")] for n in BODY_JOINT_NAMES
    ]
    assert torch.allclose(LIMITS_LO[perm], torch.where(sign > 0, LIMITS_LO, -LIMITS_HI))
    for side in ("left", "right"):
        assert LIMITS_LO[B[f"{side}_knee"], 0] == 0  # no hyperextension
        assert math.degrees(LIMITS_HI[B[f"{side}_knee"], 0]) == pytest.approx(140)
    assert LIMITS_HI[B["left_elbow"], 1] == 0 and LIMITS_LO[B["right_elbow"], 1] == 0
    assert math.degrees(LIMITS_LO[B["left_elbow"], 1]) == pytest.approx(-145)


def test_clamp_is_idempotent_and_lands_inside():
    p = random_poses(300, 2)
    c = clamp_to_limits(p)
    assert c.shape == p.shape
    assert inside(c).all() and not inside(p).all()
    assert torch.allclose(clamp_to_limits(c), c, atol=1e-5)
    assert limit_violation(c).max() < 1e-8
    ok = clamp_to_limits(library_poses().body_pose)  # poses inside the limits are left alone
    assert torch.allclose(ok, library_poses().body_pose, atol=1e-5)
    assert clamp_to_limits(p.reshape(300, 23, 3)).shape == (300, 23, 3)


def test_limit_violation_zero_for_library_positive_with_gradient_when_over_bent():
    assert torch.equal(limit_violation(library_poses().body_pose), torch.zeros(len(POSE_NAMES)))
    for deg, push in ((170.0, -1.0), (-25.0, 1.0)):  # over-bent knee, hyperextended knee
        p = joint_pose("left_knee", 0, deg).requires_grad_(True)
        v = limit_violation(p)
        assert v.shape == (1,) and v.item() > 0.01
        v.sum().backward()
        g = p.grad.reshape(23, 3)[B["left_knee"]]
        assert torch.isfinite(p.grad).all() and g[0] * push < 0  # descent un-bends it
    elbow = joint_pose("right_elbow", 1, -60.0)  # right elbow flexion is +y: -60 is hyperextension
    assert limit_violation(elbow).item() > 0 and limit_violation(mirror_pose(elbow)).item() > 0
    z = torch.zeros(4, 69, requires_grad=True)
    limit_violation(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_mirror_twice_is_identity_and_keeps_violation():
    p = random_poses(100, 3)
    assert torch.equal(mirror_pose(mirror_pose(p)), p)
    assert torch.allclose(limit_violation(mirror_pose(p)), limit_violation(p), rtol=1e-4, atol=1e-7)
    m = mirror_pose(joint_pose("left_knee", 0, 60.0)).reshape(23, 3)
    assert m[B["right_knee"], 0] == pytest.approx(math.radians(60)) and m[B["left_knee"]].abs().max() == 0


# --- sampling ---------------------------------------------------------------------------------------------
def test_sampling_is_deterministic_and_inside_limits():
    a, b, c = sample_poses(64, seed=7), sample_poses(64, seed=7), sample_poses(64, seed=8)
    assert torch.equal(a.body_pose, b.body_pose) and torch.equal(a.global_orient, b.global_orient)
    assert a.names == b.names and not torch.equal(a.body_pose, c.body_pose)
    assert a.body_pose.shape == (64, 69) and a.global_orient.shape == (64, 3)
    assert a.body_pose.dtype == torch.float32 and len(a.names) == 64
    assert inside(a.body_pose).all()
    assert torch.allclose(clamp_to_limits(a.body_pose), a.body_pose, atol=1e-5)
    torch.manual_seed(0)
    x = torch.rand(3)
    sample_poses(8, seed=1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), x)  # global RNG untouched


def test_sampling_names_weights_and_mirroring():
    s = sample_poses(200, seed=0, names=["walking", "sitting"], weights=[1.0, 0.0])
    assert set(s.names) == {"walking"}
    assert 0.3 < s.mirrored.float().mean() < 0.7
    assert len(set(sample_poses(400, seed=0).names)) == len(POSE_NAMES)
    with pytest.raises(KeyError):
        sample_poses(4, seed=0, names=["moonwalk"])
    with pytest.raises(ValueError):
        sample_poses(4, seed=0, names=["sitting"], weights=[1.0, 2.0])
    flat = sample_poses(16, seed=0, noise_scale=0.0, mirror_prob=0.0, yaw_deg=0.0)
    lib = library_poses(flat.names)
    assert torch.allclose(flat.body_pose, lib.body_pose, atol=1e-5)


# --- posed bodies -----------------------------------------------------------------------------------------
def test_anatomical_directions_on_the_body(default_model):
    """Flexion directions of the limits table on the posed body (y up, +z forward, left is +x)."""
    checks = [  # joint, axis, angle (deg), moved joint, reference joint, coordinate, sign
        ("left_hip", 0, -90, "left_knee", "left_hip", 2, 1),  # hip flexion: thigh forward
        ("right_hip", 0, -90, "right_knee", "right_hip", 2, 1),
        ("left_knee", 0, 90, "left_ankle", "left_knee", 2, -1),  # knee flexion: shin backwards
        ("left_elbow", 1, -90, "left_wrist", "left_elbow", 2, 1),  # elbow flexion: forearm forward
        ("right_elbow", 1, 90, "right_wrist", "right_elbow", 2, 1),
        ("left_shoulder", 0, 0, "left_elbow", "left_shoulder", 1, 0),
        ("left_shoulder", 2, 80, "left_elbow", "left_shoulder", 1, 1),  # arm raised
        ("left_hip", 2, 40, "left_ankle", "left_hip", 0, 1),  # abduction: leg outwards
        ("spine1", 0, 30, "neck", "spine1", 2, 1),  # spine flexion: bend forward
        ("left_ankle", 0, 40, "left_foot", "left_ankle", 1, -1),  # plantarflexion: toes down
    ]
    poses = torch.cat([joint_pose(j, ax, d) for j, ax, d, *_ in checks])
    with torch.no_grad():
        joints = default_model(body_pose=poses).joints
    for (joint, _, _, moved, ref, k, sign), js in zip(checks, joints, strict=True):
        delta = (js[J[moved]] - js[J[ref]])[k].item()
        if sign:
            assert delta * sign > 0.05, joint


def _vertex_normals(v: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    t = v[:, faces]
    n = torch.cross(t[:, :, 1] - t[:, :, 0], t[:, :, 2] - t[:, :, 0], dim=-1)
    vn = torch.zeros_like(v).index_add_(1, faces.reshape(-1), n.repeat_interleave(3, 1))
    return torch.nn.functional.normalize(vn, dim=-1)


# probe joint -> parts it must not be inside (0 head, 1 torso, 2..7 arms L/R, 8..13 legs L/R)
PROBES = {
    J["left_elbow"]: (0, 1, 3, 5, 7, 8, 9),
    J["left_wrist"]: (0, 1, 3, 5, 7, 8, 9),
    J["left_hand"]: (0, 1, 3, 5, 7, 8, 9),
    J["right_elbow"]: (0, 1, 2, 4, 6, 8, 9),
    J["right_wrist"]: (0, 1, 2, 4, 6, 8, 9),
    J["right_hand"]: (0, 1, 2, 4, 6, 8, 9),
    J["left_knee"]: (9, 11),
    J["left_ankle"]: (9, 11, 13),
    J["right_knee"]: (8, 10),
    J["right_ankle"]: (8, 10, 12),
}


def penetration_depth(model, out) -> torch.Tensor:
    """(B,P) signed distance of probe joints to other body parts (nearest vertex, along its normal)."""
    v, joints = out.vertices, out.joints
    vn = _vertex_normals(v, model.faces.long())
    rows = torch.arange(len(v))
    res = []
    for joint, parts in PROBES.items():
        mask = torch.isin(model.parts, torch.tensor(parts))
        ov, on = v[:, mask], vn[:, mask]
        i = ((ov - joints[:, joint : joint + 1]) ** 2).sum(-1).argmin(1)
        res.append(((joints[:, joint] - ov[rows, i]) * on[rows, i]).sum(-1))
    return torch.stack(res, 1)


def test_library_and_samples_look_like_people(default_model):
    lib = library_poses()
    s = sample_poses(200, seed=0)
    names = lib.names + s.names
    with torch.no_grad():
        out = default_model(
            body_pose=torch.cat([lib.body_pose, s.body_pose]),
            global_orient=torch.cat([lib.global_orient, s.global_orient]),
        )
    y = out.joints[..., 1]
    feet = y[:, [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]]]
    pelvis = y[:, J["pelvis"]]
    assert (feet.max(1).values < pelvis - 0.2).all()  # feet below the pelvis, always
    standing = torch.tensor([n in STANDING_POSES for n in names])
    assert (feet[standing].max(1).values < pelvis[standing] - 0.5).all()
    assert (feet[standing].min(1).values < pelvis[standing] - 0.75).all()  # one foot on the ground
    low = out.vertices[..., 1].argmin(1)  # the lowest point of a standing body is on a foot
    assert torch.isin(default_model.parts[low[standing]], torch.tensor([12, 13])).all()
    head = y[:, J["head"]]
    assert (head > pelvis).all()
    upright = standing & torch.tensor([n != "bending_forward" for n in names])
    assert (head[upright] > pelvis[upright] + 0.5).all()
    depth = penetration_depth(default_model, out)
    assert (depth[: len(lib.names)] > 0.0).all()  # library poses: probes outside other parts
    assert (depth > -0.03).all()  # samples: nothing grossly inside another body part
    assert (depth.min(1).values > -0.01).float().mean() > 0.95
