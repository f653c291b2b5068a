"""Surface fit: pose, shape and translation by ICP-style chamfer minimisation.

With no correspondences it starts from the rest pose under several yaw hypotheses and keeps the
best: this is the benchmark's baseline (no learned part). Nearest neighbours come from KD-trees
(recomputed each step, indices only); distances stay differentiable through torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from loopreg.body import BodyModel
from loopreg.body.model import PARAM_KEYS, HasParams
from loopreg.data.poses import pose_prior
from loopreg.fit.offsets import vertex_normals, vertex_normals_of
from loopreg.threads import kd_workers

Progress = Callable[[str, float], None]


@dataclass
class FitResult(HasParams):
    betas: torch.Tensor  # (10,)
    global_orient: torch.Tensor  # (3,)
    body_pose: torch.Tensor  # (69,)
    transl: torch.Tensor  # (3,)
    vertices: torch.Tensor  # (V,3) in the normalised frame
    joints: torch.Tensor  # (24,3)
    loss: float
    hypothesis: int


@dataclass
class SurfaceFitConfig:
    yaws_deg: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    global_iters: int = 60
    full_iters: int = 140
    keep: int = 2  # hypotheses kept after the rigid stage
    corr_weight: float = 1.0  # rigid loop loss of predicted correspondences (stage 1)
    corr_robust_m: float = 0.15
    lr: float = 0.03
    body_to_scan: float = 0.5  # weight of the body->scan term (lower it for partial scans)
    robust_m: float = 0.05  # Geman-McClure scale of the body->scan term
    pose_weight: float = 1e-3  # |body_pose|^2 (x 1e-2): a pull to the T-pose
    prior_weight: float = 0.0  # poses.pose_prior cost (squared z-scores of the joint angles)
    shape_weight: float = 1e-3
    init_iters: int = 100  # full-stage iterations when started from given parameters (`init`)
    init_lr: float = 0.01  # ... and their Adam step (the start is close: smaller than `lr`)
    outside_weight: float = 1.0  # full stage: weight of scan points outside the body (see chamfer_terms)
    # ... beyond this offset only. With the prior on, a pair a hair inside the body weighed 10-100x one a hair
    # outside: scan noise and skin-tight cloth shrank the body (GT correspondences, clothed n=32: rest height
    # -2.3 cm, V2V 1.24 cm after the loop fit, 1.39 after the surface fit). 1 cm: clothed n=32 V2V
    # 1.46 -> 1.34 cm, held-out clothed n=16 seed 3000 1.69 -> 1.53, wild 2.65 -> 2.48, partial 3.28 -> 3.27.
    outside_margin_m: float = 0.01
    # Full stage: iterations between nearest-pair searches (the pairs are held in between; the final
    # evaluation searches afresh). Two KD-tree searches were ~20 of ~56 ms per iteration. Screened
    # (scripts/scan_report.py, n=32, 1 thread, 2026-11-27) 1 -> 2: V2V clothed 1.283 -> 1.275 cm (0030 4.73
    # -> 5.05), partial 2.382 -> 2.380, wild 2.042 -> 2.038, minimal 0.617 -> 0.621; same-process clothed
    # A/B of 5 scans: median 11.9 -> 10.0 s per scan. 3: clothed 1.291, seven scans worse by > 0.1.
    pairs_every: int = 2


def _yaw_axis_angle(yaws_deg: tuple[float, ...]) -> torch.Tensor:
    a = torch.tensor([math.radians(y) for y in yaws_deg])
    return torch.stack([torch.zeros_like(a), a, torch.zeros_like(a)], 1)


def _nearest(src: np.ndarray, dst_trees: list[cKDTree]) -> np.ndarray:
    workers = kd_workers()
    return np.stack([tree.query(s, k=1, workers=workers)[1] for s, tree in zip(src, dst_trees, strict=True)])


# (B,N) each scan point's nearest body vertex, (B,V) each body vertex's nearest scan point
Pairs = tuple[torch.Tensor, torch.Tensor]


def nearest_pairs(verts: torch.Tensor, scan: torch.Tensor, scan_tree: cKDTree) -> Pairs:
    """Each scan point's nearest vertex of each body (B,V,3), and each body vertex's nearest scan point.
    The queries use `kd_workers()` (one per core outside `cpu_threads`): torch is idle meanwhile."""
    B = verts.shape[0]
    v_np = verts.detach().cpu().numpy()
    body_trees = [cKDTree(v) for v in v_np]
    idx_s2b = torch.as_tensor(_nearest(np.broadcast_to(scan.cpu().numpy(), (B, *scan.shape)), body_trees))
    idx_b2s = torch.as_tensor(_nearest(v_np, [scan_tree] * B))
    return idx_s2b.to(verts.device), idx_b2s.to(verts.device)


def chamfer_terms(
    verts: torch.Tensor,
    scan: torch.Tensor,
    scan_tree: cKDTree,
    robust_m: float,
    normals: torch.Tensor | None = None,
    outside_weight: float = 1.0,
    body_mask: torch.Tensor | None = None,
    outside_margin_m: float = 0.0,
    pairs: Pairs | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-hypothesis mean squared scan->body distance and robust body->scan distance.

    With the body's vertex `normals` (B,V,3), a pair whose scan point lies outside the body (along the
    normal of its body vertex) counts `outside_weight` times, in a weighted mean: clothing may stand off the
    body, the body may not come out through it (the body-inside-clothes prior). Normalised, a scan that stands
    off everywhere is fitted as without it (on 3 synthetic bodies clothed on torso and legs: V2V 1.10 ->
    0.94 cm normalised, 1.01 cm not). A pair counts as outside only beyond `outside_margin_m`: within it
    (scan noise, skin-tight cloth) both sides weigh the same, or the body would shrink away from it.
    `body_mask` (V,) bool: only these body vertices enter the body->scan term (a single-view scan: those its
    camera could see, `visibility.estimate_view`). `pairs`: the nearest pairs to use (`nearest_pairs`, e.g.
    of an earlier iteration); by default those of `verts`.
    """
    idx_s2b, idx_b2s = nearest_pairs(verts, scan, scan_tree) if pairs is None else pairs
    r_s2b = scan[None] - torch.gather(verts, 1, idx_s2b[..., None].expand(-1, -1, 3))
    r_b2s = scan[idx_b2s] - verts
    s2b, b2s = r_s2b.pow(2).sum(-1), r_b2s.pow(2).sum(-1)
    b2s = b2s / (b2s + robust_m**2)
    w_s2b, w_b2s = torch.ones_like(s2b), torch.ones_like(b2s)
    if normals is not None and outside_weight != 1.0:
        n_s2b = torch.gather(normals, 1, idx_s2b[..., None].expand(-1, -1, 3))
        w_s2b = torch.where((r_s2b * n_s2b).sum(-1) > outside_margin_m, outside_weight, 1.0)
        w_b2s = torch.where((r_b2s * normals).sum(-1) > outside_margin_m, outside_weight, 1.0)
    if body_mask is not None:
        w_b2s = w_b2s * body_mask.to(w_b2s)
    return (w_s2b * s2b).sum(1) / w_s2b.sum(1), (w_b2s * b2s).sum(1) / w_b2s.sum(1).clamp_min(1) * robust_m**2


def surface_loss(vertices: torch.Tensor, scan: torch.Tensor, cfg: SurfaceFitConfig | None = None) -> float:
    """The surface fit's data term (scan->body + weighted robust body->scan) of one body (V,3): comparable
    between fits of the same scan points whatever their other terms."""
    cfg = cfg or SurfaceFitConfig()
    scan = scan.to(vertices.device, vertices.dtype)
    with torch.no_grad():
        s2b, b2s = chamfer_terms(vertices[None], scan, cKDTree(scan.cpu().numpy()), cfg.robust_m)
    return float(s2b[0] + cfg.body_to_scan * b2s[0])


def signed_offsets(vertices: torch.Tensor, faces: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Offset (N,) of each point from a body (V,3) along its nearest body vertex's normal: > 0 outside."""
    with torch.no_grad():
        idx = torch.as_tensor(cKDTree(vertices.cpu().numpy()).query(points.cpu().numpy(), k=1)[1])
        idx = idx.to(vertices.device)
        n = vertex_normals(vertices, faces.to(vertices.device).long())[idx]
        return ((points.to(vertices.device, vertices.dtype) - vertices[idx]) * n).sum(-1)


def outside_share(vertices: torch.Tensor, faces: torch.Tensor, scan: torch.Tensor, far_m: float) -> float:
    """Share of scan points more than far_m outside a body (V,3) (`signed_offsets`): ~0 for a skin-tight
    scan, large for a clothed one."""
    return float((signed_offsets(vertices, faces, scan) > far_m).float().mean())


def joint_support(model: BodyModel, vertices: torch.Tensor, scan: torch.Tensor) -> torch.Tensor:
    """(23,) share of the scan points (N,3) on the body part each body joint moves: those whose nearest vertex
    of the body (V,3) is skinned mostly to the joint or one below it. Near 0: an arm hidden behind the torso,
    which the surface fit keeps as it is (`fit_surface(frozen_joints=...)`): with nothing to fit, Adam would
    follow any stray gradient (an outlier, a far chamfer pair) at full step."""
    with torch.no_grad():
        idx = cKDTree(vertices.detach().cpu().numpy()).query(scan.detach().cpu().numpy(), k=1)[1]
        dominant = model.weights.argmax(1).cpu().numpy()[idx]
        count = np.bincount(dominant, minlength=model.num_joints).astype(np.float64)
        parents = model.parents.cpu().numpy()
        for j in range(model.num_joints - 1, 0, -1):  # parents come before children
            count[parents[j]] += count[j]
    return torch.as_tensor(count[1:] / max(len(scan), 1), device=vertices.device)


def _rodrigues(aa: torch.Tensor) -> torch.Tensor:
    from smplx.lbs import batch_rodrigues

    return batch_rodrigues(aa)


def fit_surface(
    model: BodyModel,
    scan: torch.Tensor,
    cfg: SurfaceFitConfig | None = None,
    progress: Progress | None = None,
    pose_penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    corr: torch.Tensor | None = None,
    corr_weights: torch.Tensor | None = None,
    extra_init: tuple[torch.Tensor, torch.Tensor] | None = None,
    init: dict[str, torch.Tensor] | None = None,
    anchor: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    body_mask: torch.Tensor | None = None,
    frozen_joints: torch.Tensor | None = None,
) -> FitResult:
    """Fit the model to scan points (N,3) in the normalised frame (metres, y up, centred).

    Stage 1 moves the rest body rigidly under every hypothesis (the yaws, plus `extra_init`
    (global_orient (3,), transl (3,)) e.g. from correspondences) -- cheap: no skinning; the best
    `keep` hypotheses then get the full pose/shape fit. With `corr` (a canonical point per scan point,
    weights `corr_weights`), stage 1 also scores the rigidly posed correspondences against the scan
    (a rigid loop loss), which tells front from back where a chamfer cannot.

    With `init` (betas, global_orient, body_pose, transl of one body, e.g. the loop fit's result) the
    hypotheses and the rigid stage are skipped: only the full stage runs from it, `cfg.init_iters`
    iterations at `cfg.init_lr` (corr and extra_init are then unused). `anchor(params)` -> (K,) adds a
    term to the full stage's loss, e.g. the loop loss of the loop fit's correspondences (params (K, n)).
    `body_mask` (V,) bool: the body vertices the full stage's body->scan term counts (see chamfer_terms);
    `frozen_joints` (23,) bool: body joints the full stage leaves as they start (see `joint_support`).
    """
    cfg = cfg or SurfaceFitConfig()
    if cfg.pairs_every < 1:
        raise ValueError(f"pairs_every must be at least 1, not {cfg.pairs_every}")
    dev, dt = model.v_template.device, model.v_template.dtype
    scan = scan.to(dev, dt)
    tree = cKDTree(scan.cpu().numpy())
    report = progress or (lambda stage, frac: None)
    if init is not None:
        params = {k: init[k].to(dev, dt).reshape(1, -1).clone().requires_grad_(True) for k in PARAM_KEYS}
        keep = torch.zeros(1, dtype=torch.long)
        return _full_stage(
            model,
            scan,
            tree,
            cfg,
            params,
            cfg.init_iters,
            cfg.init_lr,
            pose_penalty,
            keep,
            report,
            anchor,
            body_mask,
            frozen_joints,
        )
    total = cfg.global_iters + cfg.full_iters

    rest = model.rest()
    v0, j0 = rest.vertices[0], rest.joints[0, 0]
    centre = (v0.max(0).values + v0.min(0).values) / 2
    B = len(cfg.yaws_deg)
    orient = _yaw_axis_angle(cfg.yaws_deg).to(dev, dt)
    transl = (-centre).expand(B, 3).clone()
    if extra_init is not None:
        orient = torch.cat([orient, extra_init[0].to(dev, dt)[None]])
        transl = torch.cat([transl, extra_init[1].to(dev, dt)[None]])
    orient.requires_grad_(True)
    transl.requires_grad_(True)
    if corr is not None:
        corr = corr.to(dev, dt)
        cw = torch.ones(len(corr), device=dev, dtype=dt) if corr_weights is None else corr_weights.to(dev, dt)
        cw = cw / cw.sum()

    def rigid_loss() -> torch.Tensor:
        R = _rodrigues(orient).transpose(1, 2)
        verts = (v0 - j0) @ R + j0 + transl[:, None]
        s2b, b2s = chamfer_terms(verts, scan, tree, cfg.robust_m)
        loss = s2b + cfg.body_to_scan * b2s
        if corr is not None:  # robust rigid loop loss of the predicted correspondences
            d2 = ((corr - j0) @ R + j0 + transl[:, None] - scan[None]).pow(2).sum(-1)
            loss = (
                loss + cfg.corr_weight * (cw * d2 / (d2 + cfg.corr_robust_m**2)).sum(1) * cfg.corr_robust_m**2
            )
        return loss

    opt = torch.optim.Adam([orient, transl], lr=cfg.lr)
    for it in range(cfg.global_iters):
        opt.zero_grad()
        rigid_loss().sum().backward()
        opt.step()
        if it % 10 == 9:
            report("fit_global", (it + 1) / total)
    with torch.no_grad():
        keep = rigid_loss().argsort()[: cfg.keep]
    K = len(keep)
    params = {
        "global_orient": orient.detach()[keep].clone(),
        "transl": transl.detach()[keep].clone(),
        "body_pose": torch.zeros(K, 69, device=dev, dtype=dt),
        "betas": torch.zeros(K, model.num_betas, device=dev, dtype=dt),
    }
    for p in params.values():
        p.requires_grad_(True)

    def stage_report(stage: str, frac: float) -> None:
        report(stage, (cfg.global_iters + frac * cfg.full_iters) / total)

    return _full_stage(
        model,
        scan,
        tree,
        cfg,
        params,
        cfg.full_iters,
        cfg.lr,
        pose_penalty,
        keep,
        stage_report,
        anchor,
        body_mask,
        frozen_joints,
    )


def _full_stage(
    model: BodyModel,
    scan: torch.Tensor,
    tree: cKDTree,
    cfg: SurfaceFitConfig,
    params: dict[str, torch.Tensor],
    iters: int,
    lr: float,
    pose_penalty: Callable[[torch.Tensor], torch.Tensor] | None,
    keep: torch.Tensor,
    report: Progress,
    anchor: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    body_mask: torch.Tensor | None = None,
    frozen_joints: torch.Tensor | None = None,
) -> FitResult:
    """Pose/shape/translation fit of K hypotheses (params (K, n) leaves); returns the best one."""
    faces = model.faces.to(scan.device).long()
    normals_of = vertex_normals_of(faces, model.v_template.shape[0], scan.dtype)

    pairs: Pairs | None = None  # the nearest pairs, found again every cfg.pairs_every iterations

    def loss_fn(it: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal pairs
        out = model(**params)
        normals = normals_of(out.vertices.detach()) if cfg.outside_weight != 1.0 else None
        if it is None or it % cfg.pairs_every == 0:  # the final evaluation: fresh pairs
            pairs = nearest_pairs(out.vertices, scan, tree)
        s2b, b2s = chamfer_terms(
            out.vertices,
            scan,
            tree,
            cfg.robust_m,
            normals,
            cfg.outside_weight,
            body_mask,
            cfg.outside_margin_m,
            pairs,
        )
        per = s2b + cfg.body_to_scan * b2s
        per = per + cfg.pose_weight * params["body_pose"].pow(2).sum(1) * 1e-2
        per = per + cfg.shape_weight * params["betas"].pow(2).sum(1) * 1e-2
        if cfg.prior_weight:
            per = per + cfg.prior_weight * pose_prior().cost(params["body_pose"])
        if pose_penalty is not None:
            per = per + 1e-3 * pose_penalty(params["body_pose"])
        if anchor is not None:
            per = per + anchor(params)
        return per, out

    opt = torch.optim.Adam(list(params.values()), lr=lr)
    for it in range(iters):
        opt.zero_grad()
        per, _ = loss_fn(it)
        per.sum().backward()
        if frozen_joints is not None:
            params["body_pose"].grad.view(len(keep), -1, 3)[:, frozen_joints] = 0
        opt.step()
        if it % 10 == 9:
            report("fit_surface", (it + 1) / iters)
    with torch.no_grad():
        per, out = loss_fn()
    best = int(per.argmin())
    return FitResult(
        betas=params["betas"][best].detach(),
        global_orient=params["global_orient"][best].detach(),
        body_pose=params["body_pose"][best].detach(),
        transl=params["transl"][best].detach(),
        vertices=out.vertices[best].detach(),
        joints=out.joints[best].detach(),
        loss=float(per[best]),
        hypothesis=int(keep[best]),
    )
