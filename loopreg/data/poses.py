"""Human-like body poses without mocap: anatomical joint limits, a library of scan poses, a sampler.

Joint angles. Each of the 23 body joints' rotation (SMPL axis-angle, relative to the parent, in the rest
frame's axes: y up, +z forward, the model's left is +x) is split into a twist about the joint's bone
axis (x for the arms and collars, y for the legs, spine, neck and head, z for the feet) and a swing
about the other two axes (the swing's axis-angle vector, whose component on the bone axis is zero):
R = R_swing @ R_twist. The three joint angles per joint are (x, y, z): the twist on the bone axis and
the swing-vector components on the other two. For small rotations they equal the axis-angle; the
decomposition is unique while the swing stays below 180 degrees (always, inside the limits).

Limits are boxes on these angles, from standard active ranges of motion (AAOS, "Joint Motion: Method
of Measuring and Recording", 1965; Norkin & White, "Measurement of Joint Motion", 5th ed.; Kapandji,
"The Physiology of the Joints"), written for the left side and mirrored for the right. Mirroring across
the x=0 plane swaps left/right joints and flips the y and z components, of axis-angles and of joint
angles alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch

from loopreg.body.data import SMPL_JOINT_NAMES, SMPL_PARENTS

BODY_JOINT_NAMES: tuple[str, ...] = SMPL_JOINT_NAMES[1:]  # body_pose order (23 joints)
NUM_BODY_JOINTS = len(BODY_JOINT_NAMES)
MIRROR_SIGN = (1.0, -1.0, -1.0)


def _side_swap(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


MIRROR_PERM: tuple[int, ...] = tuple(BODY_JOINT_NAMES.index(_side_swap(n)) for n in BODY_JOINT_NAMES)

# fmt: off
# Per left/central joint: bone (twist) axis 0=x 1=y 2=z, and (lo, hi) degrees for the x, y, z angles.
# Signs (left side): hip x<0 flexion (thigh forward), z>0 abduction, y>0 external rotation; knee x>0
# flexion; ankle x>0 plantarflexion, z>0 eversion; spine/neck/head x>0 flexion (forward); collar z>0
# elevation, y<0 protraction; shoulder z>0 raises the arm, y<0 swings it forward, x>0 internal rotation;
# elbow y<0 flexion (forearm forward in the palms-down T-pose), x<0 supination; wrist z<0 flexion
# (palm side), y<0 radial deviation; hand z<0 curls the fingers.
_LIMITS_DEG: dict[str, tuple[int, tuple[tuple[float, float], ...]]] = {
    "left_hip":      (1, ((-125, 30), (-40, 45), (-30, 45))),   # flex 120-125, ext 20-30, abd 45, add 30
    "left_knee":     (1, ((0, 140), (-15, 25), (-5, 5))),       # flexion 0-140, one way
    "left_ankle":    (2, ((-40, 50), (-25, 20), (-35, 20))),    # dorsi 20 (40 weight-bearing), plantar 50
    "left_foot":     (2, ((-45, 25), (-10, 10), (-10, 10))),    # toes: extension 45, flexion 25
    "spine1":        (1, ((-15, 30), (-10, 10), (-15, 15))),    # lumbar: rotation small
    "spine2":        (1, ((-15, 30), (-15, 15), (-15, 15))),
    "spine3":        (1, ((-15, 25), (-20, 20), (-15, 15))),    # thoracic: most of the axial rotation
    "neck":          (1, ((-35, 40), (-40, 40), (-25, 25))),
    "head":          (1, ((-30, 25), (-35, 35), (-20, 20))),    # cervical total: flex ~60, rot ~75
    "left_collar":   (0, ((-15, 15), (-20, 20), (-10, 35))),    # shoulder girdle elevation ~35
    "left_shoulder": (0, ((-90, 70), (-130, 60), (-90, 90))),   # ext rot 90, int rot 70; arm down..up
    "left_elbow":    (0, ((-90, 80), (-145, 0), (-10, 10))),    # flexion 0-145, one way; sup 90, pro 80
    "left_wrist":    (0, ((-30, 30), (-20, 30), (-80, 70))),    # flexion 80, extension 70, radial 20
    "left_hand":     (0, ((-10, 10), (-15, 15), (-90, 30))),    # finger block: flexion 90
}
# Perturbation std (degrees) per joint (x, y, z) for sampling around a library pose.
_PERTURB_DEG: dict[str, tuple[float, float, float]] = {
    "left_hip": (5, 5, 3), "left_knee": (5, 2, 1), "left_ankle": (4, 3, 3), "left_foot": (3, 1, 1),
    "spine1": (3, 2, 2), "spine2": (3, 2, 2), "spine3": (3, 3, 2), "neck": (5, 8, 4), "head": (5, 8, 4),
    "left_collar": (2, 3, 3), "left_shoulder": (5, 7, 6), "left_elbow": (6, 8, 2),
    "left_wrist": (6, 5, 8), "left_hand": (3, 3, 10),
}
# fmt: on


def _table(entries: dict, key: str) -> tuple:
    """Row for a joint: central and left entries as written, right ones mirrored."""
    if key in entries:
        return entries[key]
    return entries[_side_swap(key)]


def _build_limits() -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    lo, hi, axes = torch.zeros(NUM_BODY_JOINTS, 3), torch.zeros(NUM_BODY_JOINTS, 3), []
    for j, name in enumerate(BODY_JOINT_NAMES):
        axis, box = _table(_LIMITS_DEG, name)
        axes.append(axis)
        for k, (a, b) in enumerate(box):
            if name.startswith("right_") and MIRROR_SIGN[k] < 0:
                a, b = -b, -a
            lo[j, k], hi[j, k] = math.radians(a), math.radians(b)
    return lo, hi, tuple(axes)


LIMITS_LO, LIMITS_HI, TWIST_AXIS = _build_limits()  # (23,3) radians; twist axis per joint
PERTURB_STD = torch.tensor(
    [[math.radians(s) for s in _table(_PERTURB_DEG, n)] for n in BODY_JOINT_NAMES]
)  # (23,3) radians; mirror-symmetric in magnitude

# --- rotation helpers (quaternions w, x, y, z) ------------------------------------------------------------
_EPS2 = 1e-16


def aa_to_quat(aa: torch.Tensor) -> torch.Tensor:
    """(...,3) axis-angle -> (...,4) unit quaternion (smooth at zero)."""
    angle = torch.sqrt((aa * aa).sum(-1, keepdim=True) + _EPS2)
    half = 0.5 * angle
    return torch.cat([torch.cos(half), aa * (torch.sin(half) / angle)], -1)


def quat_to_aa(q: torch.Tensor) -> torch.Tensor:
    """(...,4) unit quaternion -> (...,3) axis-angle with angle in [0, pi]."""
    q = torch.where(q[..., :1] < 0, -q, q)
    n = torch.sqrt((q[..., 1:] ** 2).sum(-1, keepdim=True) + _EPS2)
    return q[..., 1:] * (2.0 * torch.atan2(n, q[..., :1]) / n)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, av = a[..., :1], a[..., 1:]
    bw, bv = b[..., :1], b[..., 1:]
    w = aw * bw - (av * bv).sum(-1, keepdim=True)
    v = aw * bv + bw * av + torch.cross(av, bv, dim=-1)
    return torch.cat([w, v], -1)


def _axis_onehot(like: torch.Tensor) -> torch.Tensor:
    """(23,3) one-hot twist axes, broadcastable against (...,23,3)."""
    return torch.nn.functional.one_hot(torch.tensor(TWIST_AXIS), 3).to(like)


# --- joint angles <-> body_pose ---------------------------------------------------------------------------
def _as_joints(body_pose: torch.Tensor) -> torch.Tensor:
    if body_pose.shape[-1] == 3 * NUM_BODY_JOINTS:
        return body_pose.reshape(*body_pose.shape[:-1], NUM_BODY_JOINTS, 3)
    if body_pose.shape[-2:] != (NUM_BODY_JOINTS, 3):
        raise ValueError(f"body_pose must be (...,69) or (...,23,3), got {tuple(body_pose.shape)}")
    return body_pose


def pose_to_angles(body_pose: torch.Tensor) -> torch.Tensor:
    """(...,69) or (...,23,3) axis-angle -> (...,23,3) swing-twist joint angles (radians)."""
    q = aa_to_quat(_as_joints(body_pose))
    q = torch.where(q[..., :1] < 0, -q, q)
    a = _axis_onehot(q)
    twist = 2.0 * torch.atan2((q[..., 1:] * a).sum(-1, keepdim=True), q[..., :1])  # (...,23,1)
    q_twist_inv = torch.cat([torch.cos(0.5 * twist), -torch.sin(0.5 * twist) * a], -1)
    swing = quat_to_aa(quat_mul(q, q_twist_inv)) * (1 - a)
    return swing + twist * a


def angles_to_pose(angles: torch.Tensor) -> torch.Tensor:
    """(...,23,3) joint angles -> (...,69) axis-angle body_pose."""
    a = _axis_onehot(angles)
    twist = (angles * a).sum(-1, keepdim=True)
    q_twist = torch.cat([torch.cos(0.5 * twist), torch.sin(0.5 * twist) * a], -1)
    q = quat_mul(aa_to_quat(angles * (1 - a)), q_twist)
    return quat_to_aa(q).reshape(*angles.shape[:-2], 3 * NUM_BODY_JOINTS)


def clamp_angles(angles: torch.Tensor) -> torch.Tensor:
    lo, hi = LIMITS_LO.to(angles), LIMITS_HI.to(angles)
    return torch.minimum(torch.maximum(angles, lo), hi)


def clamp_to_limits(body_pose: torch.Tensor) -> torch.Tensor:
    """Clamp every joint's swing-twist angles into the anatomical box; same shape as the input."""
    out = angles_to_pose(clamp_angles(pose_to_angles(body_pose)))
    return out.reshape(body_pose.shape)


def limit_violation(body_pose: torch.Tensor, per_joint: bool = False) -> torch.Tensor:
    """Squared excess beyond the limits (radians^2), summed per sample (B,) or per joint (B,23).

    Zero inside the limits, smooth (C1) at the boundary: usable as a pose prior term.
    """
    angles = pose_to_angles(body_pose)
    lo, hi = LIMITS_LO.to(angles), LIMITS_HI.to(angles)
    excess = torch.relu(lo - angles) + torch.relu(angles - hi)
    cost = (excess**2).sum(-1)
    return cost if per_joint else cost.sum(-1)


# --- mirroring --------------------------------------------------------------------------------------------
def _mirror_sign(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(MIRROR_SIGN, dtype=like.dtype, device=like.device)


def mirror_pose(body_pose: torch.Tensor) -> torch.Tensor:
    """Mirror across the x=0 plane: swap left/right joints, flip y and z. (...,69) or (...,23,3)."""
    j = _as_joints(body_pose)[..., list(MIRROR_PERM), :] * _mirror_sign(body_pose)
    return j.reshape(body_pose.shape)


def mirror_orient(global_orient: torch.Tensor) -> torch.Tensor:
    """Mirror a root rotation (...,3) across the x=0 plane."""
    return global_orient * _mirror_sign(global_orient)


# --- pose library -----------------------------------------------------------------------------------------
# Joint angles in degrees. A key without side ("shoulder") sets both sides symmetrically; "left_x" and
# "right_x" keys are written in the LEFT side's convention (same anatomical meaning), mirrored for the
# right. "global" is the root axis-angle (degrees). "noise" scales the perturbation per joint key.
# fmt: off
_RELAXED_ARMS = {"collar": (0, 0, -3), "shoulder": (0, -5, -72), "elbow": (0, -12, 0)}
POSE_LIBRARY_SPEC: dict[str, dict] = {
    "t_pose": {},
    "a_pose": {"shoulder": (0, 0, -45)},
    "relaxed": {**_RELAXED_ARMS, "hip": (0, 0, -2)},
    "contrapposto": {
        "global": (0, 0, -7), "right_hip": (0, 0, -7), "left_hip": (-15, 10, 9), "left_knee": (26, 0, 0),
        "left_ankle": (10, 0, 0), "spine1": (0, 3, 5), "spine2": (0, 3, 5), "spine3": (0, 2, 4),
        "head": (0, 10, -5), **_RELAXED_ARMS, "left_shoulder": (0, -5, -68), "left_elbow": (0, -30, 0),
    },
    "walking": {
        "left_hip": (-25, 0, 0), "left_knee": (5, 0, 0), "left_ankle": (-8, 0, 0),
        "right_hip": (15, 0, 0), "right_knee": (25, 0, 0), "right_ankle": (15, 0, 0),
        "right_foot": (-20, 0, 0), "spine2": (0, -4, 0), "spine3": (0, -4, 0),
        "collar": (0, 0, -3), "left_shoulder": (0, 12, -70), "right_shoulder": (-12, -20, -72),
        "left_elbow": (0, -15, 0), "right_elbow": (0, -25, 0),
    },
    "arms_raised": {"collar": (0, 0, 20), "shoulder": (0, 0, 55), "elbow": (0, -10, 0)},
    "hands_on_hips": {
        "collar": (10, -8, -5), "shoulder": (55, 20, -48), "elbow": (0, -88, -5), "wrist": (-5, -12, 50),
        "noise": {"collar": 0.4, "shoulder": 0.35, "elbow": 0.35, "wrist": 0.4},
    },
    "crossed_arms": {
        "left_collar": (4, 5, 1), "left_shoulder": (34, -51, -71), "left_elbow": (0, -93, 3),
        "left_wrist": (0, -12, -22), "right_collar": (9, 4, -3), "right_shoulder": (42, -47, -64),
        "right_elbow": (0, -100, 0), "right_wrist": (0, 0, -14),
        "noise": {"collar": 0.4, "shoulder": 0.4, "elbow": 0.4, "wrist": 0.5},
    },
    "sitting": {
        "hip": (-90, 0, 3), "knee": (90, 0, 0), "shoulder": (4, -4, -77), "elbow": (0, -85, -5),
        "wrist": (0, 3, 8), "noise": {"hip": 0.6, "shoulder": 0.5, "elbow": 0.5, "wrist": 0.6},
    },
    "squatting": {
        "global": (30, 0, 0), "hip": (-120, 10, 12), "knee": (125, 0, 0), "ankle": (-35, 0, 0),
        "shoulder": (0, -75, -35), "elbow": (0, -25, 0),
    },
    "bending_forward": {
        "global": (50, 0, 0), "hip": (-50, 0, 0), "spine1": (10, 0, 0), "spine2": (10, 0, 0),
        "spine3": (10, 0, 0), "neck": (-10, 0, 0), "shoulder": (0, -80, -35), "elbow": (0, -15, 0),
    },
    "reaching": {
        "spine1": (5, 2, 0), "spine2": (5, 2, 0), "spine3": (0, 2, 0),
        "right_collar": (0, -5, 10), "right_shoulder": (0, -60, 40), "right_elbow": (0, -10, 0),
        "left_collar": (0, 0, -3), "left_shoulder": (0, -5, -70), "left_elbow": (0, -12, 0),
    },
    "knee_raised": {
        "left_hip": (-90, 0, 0), "left_knee": (90, 0, 0), "left_ankle": (10, 0, 0),
        "shoulder": (0, 0, -65), "elbow": (0, -15, 0),
    },
}
# fmt: on
# Both feet on the ground.
STANDING_POSES: frozenset[str] = frozenset(POSE_LIBRARY_SPEC) - {"sitting", "squatting", "knee_raised"}


@dataclass(frozen=True)
class LibraryPose:
    name: str
    angles: torch.Tensor  # (23,3) joint angles, radians
    global_orient: torch.Tensor  # (3,) axis-angle
    noise: torch.Tensor  # (23,3) perturbation multiplier

    @property
    def body_pose(self) -> torch.Tensor:
        """(69,) axis-angle body_pose."""
        return angles_to_pose(self.angles)


def _keys_for(key: str) -> list[tuple[str, bool]]:
    """Body joints a spec key sets, with whether the value must be mirrored."""
    if key in BODY_JOINT_NAMES:
        return [(key, key.startswith("right_"))]
    return [("left_" + key, False), ("right_" + key, True)]


def _build_library_pose(name: str, spec: dict) -> LibraryPose:
    angles, noise = torch.zeros(NUM_BODY_JOINTS, 3), torch.ones(NUM_BODY_JOINTS, 3)
    for key, value in spec.items():
        if key in ("global", "noise"):
            continue
        for joint, mirrored in _keys_for(key):
            v = torch.tensor([math.radians(x) for x in value])
            angles[BODY_JOINT_NAMES.index(joint)] = v * torch.tensor(MIRROR_SIGN) if mirrored else v
    for key, scale in spec.get("noise", {}).items():
        for joint, _ in _keys_for(key):
            noise[BODY_JOINT_NAMES.index(joint)] = scale
    glob = torch.tensor([math.radians(x) for x in spec.get("global", (0, 0, 0))])
    return LibraryPose(name, angles, glob, noise)


POSE_LIBRARY: dict[str, LibraryPose] = {n: _build_library_pose(n, s) for n, s in POSE_LIBRARY_SPEC.items()}
POSE_NAMES: tuple[str, ...] = tuple(POSE_LIBRARY)


# --- sampling ---------------------------------------------------------------------------------------------
@dataclass
class PoseSample:
    body_pose: torch.Tensor  # (n,69) float32 axis-angle
    global_orient: torch.Tensor  # (n,3) float32 axis-angle
    names: list[str]  # library pose of each sample
    mirrored: torch.Tensor  # (n,) bool, left/right swapped


def _yaw_then(yaw: torch.Tensor, orient: torch.Tensor) -> torch.Tensor:
    """Axis-angle of R_y(yaw) @ R(orient)."""
    half = 0.5 * yaw
    z = torch.zeros_like(yaw)
    q_yaw = torch.stack([torch.cos(half), z, torch.sin(half), z], -1)
    return quat_to_aa(quat_mul(q_yaw, aa_to_quat(orient)))


def sample_poses(
    n: int,
    seed: int,
    names: list[str] | tuple[str, ...] | None = None,
    weights: list[float] | torch.Tensor | None = None,
    noise_scale: float = 1.0,
    yaw_deg: float = 20.0,
    mirror_prob: float = 0.5,
) -> PoseSample:
    """n human-like poses: a library pose each (uniform or by weights), Gaussian per-joint perturbation
    (PERTURB_STD * noise_scale), a left/right mirror with mirror_prob, clamped to the limits, and a
    uniform yaw in [-yaw_deg, yaw_deg] about y. Deterministic given the seed."""
    names = tuple(POSE_NAMES if names is None else names)
    unknown = [x for x in names if x not in POSE_LIBRARY]
    if unknown:
        raise KeyError(f"unknown poses {unknown}; known: {', '.join(POSE_NAMES)}")
    g = torch.Generator().manual_seed(int(seed))
    w = torch.ones(len(names)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if w.shape != (len(names),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per name, not all zero")
    pick = torch.multinomial(w, n, replacement=True, generator=g)
    lib = [POSE_LIBRARY[x] for x in names]
    base = torch.stack([p.angles for p in lib])[pick]  # (n,23,3)
    scale = torch.stack([p.noise for p in lib])[pick] * PERTURB_STD * noise_scale
    glob = torch.stack([p.global_orient for p in lib])[pick]
    angles = base + torch.randn(base.shape, generator=g) * scale
    mirrored = torch.rand(n, generator=g) < mirror_prob
    m = mirrored[:, None, None]
    angles = torch.where(m, mirror_pose(angles), angles)
    glob = torch.where(m[:, 0], mirror_orient(glob), glob)
    yaw = (2 * torch.rand(n, generator=g) - 1) * math.radians(yaw_deg)
    body_pose = angles_to_pose(clamp_angles(angles))
    return PoseSample(
        body_pose=body_pose.float(),
        global_orient=_yaw_then(yaw, glob).float(),
        names=[names[i] for i in pick.tolist()],
        mirrored=mirrored,
    )


def library_poses(names: list[str] | tuple[str, ...] | None = None) -> PoseSample:
    """The library poses themselves, unperturbed, in order."""
    names = tuple(POSE_NAMES if names is None else names)
    lib = [POSE_LIBRARY[x] for x in names]
    return PoseSample(
        body_pose=torch.stack([p.body_pose for p in lib]).float(),
        global_orient=torch.stack([p.global_orient for p in lib]).float(),
        names=list(names),
        mirrored=torch.zeros(len(names), dtype=torch.bool),
    )


# --- prior ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PosePrior:
    """A diagonal Gaussian over the joint angles of the pose sampler's distribution (the library with its
    perturbations, mirrored half the time): a weak pull for joints the data does not see (an arm hidden
    behind the body in a partial scan) towards a likely pose instead of the T-pose."""

    mean: torch.Tensor  # (23,3) joint angles, radians (the median)
    std: torch.Tensor  # (23,3) radians

    @property
    def body_pose(self) -> torch.Tensor:
        """(69,) axis-angle of the mean angles."""
        return angles_to_pose(self.mean)

    def cost(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Squared z-scores of the joint angles, summed per sample: (...,69) -> (...)."""
        z = (pose_to_angles(body_pose) - self.mean.to(body_pose)) / self.std.to(body_pose)
        return z.square().sum((-2, -1))


@cache
def pose_prior(n: int = 8192, seed: int = 0, min_std_deg: float = 10.0) -> PosePrior:
    """The prior fitted to n samples of `sample_poses`: centred on the median angles (the typical standing
    pose; the mean bends the legs halfway to sitting), std floored at min_std_deg (the library's poses are a
    few of the many real ones: the prior must stay broad)."""
    angles = pose_to_angles(sample_poses(n, seed).body_pose.double())
    std = angles.std(0).clamp_min(math.radians(min_std_deg))
    return PosePrior(mean=angles.median(0).values.float(), std=std.float())


@dataclass(frozen=True)
class PoseMixture:
    """The pose sampler as a Gaussian mixture over joint angles: one component per library pose and its
    mirror image, each with the sampler's perturbation std (floored at min_std_deg). Unlike `PosePrior`'s
    one broad Gaussian it knows which poses go together: a partial scan's seen arm and legs pick a
    component, which places the hidden arm (SMPLify's GMM prior, fitted to mocap, plays the same part).
    Its poses are the sampler's, i.e. the synthetic suites' own: on real scans a hidden limb goes to the
    nearest library pose's, the seen joints staying with the data."""

    means: torch.Tensor  # (K,23,3) joint angles, radians
    stds: torch.Tensor  # (K,23,3) radians
    names: tuple[str, ...]  # library pose of each component ("~" prefix: mirrored)

    def log_likelihoods(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Per-component Gaussian log-density (up to a constant) of the joint angles: (...,69) -> (...,K)."""
        a = pose_to_angles(body_pose)[..., None, :, :]  # (...,1,23,3)
        mean, std = self.means.to(a), self.stds.to(a)
        return (-0.5 * ((a - mean) / std).square() - std.log()).sum((-2, -1))

    def cost(self, body_pose: torch.Tensor) -> torch.Tensor:
        """-2 log-likelihood up to a constant (about the squared z-scores of the nearest component):
        (...,69) -> (...)."""
        return -2.0 * torch.logsumexp(self.log_likelihoods(body_pose), -1)

    def nearest(self, body_pose: torch.Tensor, joints: torch.Tensor) -> int:
        """The component whose mean is nearest (69,) body_pose on `joints` (23,) bool, comparing each joint's
        rotation relative to the pelvis (`chain_rotations`): a fit may split a bend between joints (collar
        and shoulder, the spine's three) that one component's angles put in one of them."""
        with torch.no_grad():
            g = chain_rotations(body_pose.detach().float().cpu().reshape(1, -1))  # (1,23,3,3)
            gk = chain_rotations(angles_to_pose(self.means))  # (K,23,3,3)
            cos = ((torch.einsum("kjab,kjab->kj", g.expand_as(gk), gk) - 1) / 2).clamp(-1, 1)
            d2 = torch.arccos(cos).square() * joints.cpu().float()
            return int(d2.sum(1).argmin())

    def complete(
        self, body_pose: torch.Tensor, seen: torch.Tensor, fill: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(69,) body_pose with the joints `fill` (23,) bool (default: those not `seen`) set to the
        component `nearest` on the `seen` (23,) bool ones (its mean angles); the others keep theirs."""
        k = self.nearest(body_pose, seen)
        fill = ~seen if fill is None else fill
        out = _as_joints(body_pose).clone()
        mean = _as_joints(angles_to_pose(self.means[k]).to(body_pose))
        out[fill.to(out.device)] = mean[fill.to(out.device)]
        return out.reshape(body_pose.shape)


def chain_rotations(body_pose: torch.Tensor) -> torch.Tensor:
    """(B,69) axis-angle -> (B,23,3,3): each body joint's rotation relative to the pelvis (the product of
    the local rotations from the pelvis down to it)."""
    from smplx.lbs import batch_rigid_transform, batch_rodrigues

    B = body_pose.shape[0]
    root = torch.zeros(B, 1, 3, dtype=body_pose.dtype, device=body_pose.device)  # the pelvis: identity
    aa = torch.cat([root, body_pose.reshape(B, -1, 3)], 1)
    rot = batch_rodrigues(aa.reshape(-1, 3)).reshape(B, -1, 3, 3)
    joints = torch.zeros(B, rot.shape[1], 3, dtype=rot.dtype, device=rot.device)  # rotations only
    parents = torch.tensor(SMPL_PARENTS, device=rot.device)
    _, A = batch_rigid_transform(rot, joints, parents, dtype=rot.dtype)
    return A[:, 1:, :3, :3]


@cache
def pose_mixture(min_std_deg: float = 8.0) -> PoseMixture:
    """The mixture of the whole library (see PoseMixture); built once."""
    means, stds, names = [], [], []
    for p in POSE_LIBRARY.values():
        std = (p.noise * PERTURB_STD).clamp_min(math.radians(min_std_deg))
        mean = clamp_angles(p.angles)
        means.append(mean), stds.append(std), names.append(p.name)
        mirrored = clamp_angles(mirror_pose(mean))
        if not torch.allclose(mirrored, mean):
            means.append(mirrored), stds.append(std[list(MIRROR_PERM)]), names.append("~" + p.name)
    return PoseMixture(means=torch.stack(means), stds=torch.stack(stds), names=tuple(names))
