"""LoopReg's test-time fit: pose, shape, translation through the diffused body field; free correspondences.

Input: scan points p (N,3) in the normalised model frame (metres, y up), a canonical point x per scan point
(the network's prediction, on or near the rest template) with a confidence weight, and a rigid start
(global_orient, transl), e.g. from a robust Procrustes of x onto p.

- Stage A, fixed correspondences: one field lookup at x, reused; minimise the weighted Geman-McClure loop
  loss rho(|W(x; theta, beta) + t - p|) (its scale shrinks over the iterations) + a pose prior (joint-limit
  violation and `poses.pose_mixture`, the pose sampler's Gaussian mixture on the joint angles: joints without
  data drift towards the library pose that the seen joints match, not the T-pose) + a shape prior |beta|^2.
  Rigid (global_orient, transl) first, then all.
- Stage B, free correspondences (LoopReg's test-time refinement): x becomes a variable too, with a term
  |x - closest(x)|^2 that keeps it on the canonical surface; theta, beta, t continue. The field is looked up
  again every `relookup_every` iterations; in between, closest(x) is linearised (it slides with x along the
  tangent plane, so only the normal offset is penalised) and the blend shapes and weights stay those of the
  last lookup. Gradients move x only locally, so every `reassign_every` iterations a correspondence whose
  loop residual is large while its scan point lies on the posed body takes the canonical position of the
  posed body's nearest vertex instead (a wrong network correspondence, e.g. on the other arm).
- Heavy clothing (`outside_weight` < 1, the pipeline's refit): a garment point's correspondence is its
  nearest body point, so the cloth's offset along the posed body's outward normal is discounted beyond a
  margin (`clothed_r2`; the normal is the point's skinning rotation applied to its canonical normal).

Speed: `LoopPoser` holds the lookup's interpolation (a sparse matrix) and skinning weights, so an iteration
is two mat-vecs over the template's vertices, a sparse one to the points and the kinematic chain. Everything
runs on the field's device; a reassignment makes one KD-tree query on the CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from smplx.lbs import batch_rigid_transform, batch_rodrigues

from loopreg.body import BodyModel
from loopreg.body.field import BodyField, FieldSample
from loopreg.body.model import PARAM_KEYS, HasParams
from loopreg.data.poses import limit_violation, pose_mixture, pose_prior
from loopreg.fit.offsets import vertex_normals
from loopreg.threads import kd_workers

Progress = Callable[[str, float], None]


@dataclass
class LoopFitConfig:
    rigid_iters: int = 15  # global_orient and transl only
    iters_a: int = 120  # stage A: fixed correspondences, all parameters
    iters_b: int = 40  # stage B: free correspondences
    lr: float = 0.1  # Adam, parameters (radians, metres, betas); decays to lr * lr_decay over stage A
    lr_decay: float = 0.1
    lr_b: float = 0.005  # stage B, parameters (decaying to lr_b * lr_decay)
    lr_canon: float = 0.004  # stage B, canonical points (m)
    robust_start_m: float = 0.15  # Geman-McClure scale: rigid stage and start of stage A ...
    robust_end_m: float = 0.05  # ... shrinking geometrically to this at the end of stage A
    robust_b_m: float = 0.05  # stage B
    limit_weight: float = 1e-3  # limit_violation(body_pose) (rad^2)
    pose_weight: float = 0.0  # |body_pose|^2 (rad^2): a pull to the T-pose (off: the prior replaces it)
    prior_weight: float = 1e-7  # the pose prior's cost (~ squared z-scores of the joint angles)
    # "mixture": poses.pose_mixture (the library's poses: seen joints pick the pose, hidden ones follow);
    # "gaussian": poses.pose_prior (one broad Gaussian: hidden joints go to the median pose).
    prior: str = "mixture"
    start_at_prior: bool = False  # body_pose starts at the prior's median pose (else the T-pose)
    shape_weight: float = 1e-6  # |betas|^2
    surface_weight: float = 10.0  # stage B: |x - closest(x)|^2 relative to the squared loop residual
    relookup_every: int = 5  # stage B: iterations between field lookups at the moving points
    reassign: bool = True  # stage B: replace wrong correspondences by the posed body's nearest vertex
    reassign_every: int = 10  # iterations of stage B between reassignments (the first at its start)
    reassign_far_m: float = 0.08  # a correspondence is suspect when its loop residual is above this ...
    reassign_near_m: float = 0.03  # ... while its scan point is this close to the posed body
    # Clothing: the part of a residual along the posed body's outward normal beyond outside_margin_m (the
    # scan point stands off the body, as cloth does) counts outside_weight times in its square (1: off).
    # Stage A after the rigid start, and stage B. Heavy clothing only (FitPlan.heavy_loop_outside).
    outside_weight: float = 1.0
    outside_margin_m: float = 0.01
    inlier_m: float = 0.03  # `inliers`: share of final loop residuals below this
    agree_m: float = 0.10  # `agreement`: share of the given correspondences' residuals below this


@dataclass
class LoopFitResult(HasParams):
    betas: torch.Tensor  # (B,)
    global_orient: torch.Tensor  # (3,)
    body_pose: torch.Tensor  # (69,)
    transl: torch.Tensor  # (3,)
    canon: torch.Tensor  # (N,3) refined canonical points
    loss: float  # final objective (robust loop + surface + priors)
    stage_losses: dict[str, float] = field(default_factory=dict)  # objective at the end of each stage
    agreement: float = 0.0  # weighted share of the given correspondences within agree_m after stage A
    inliers: float = 0.0  # weighted share of the final correspondences within inlier_m (after stage B)
    reassigned: int = 0  # correspondences replaced in stage B (distinct points)


class _Gather(torch.autograd.Function):
    """y = M @ v for a sparse (N, V) CSR M with its transpose MT held for the backward (torch would
    transpose M at every backward)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, M: torch.Tensor, MT: torch.Tensor) -> torch.Tensor:
        ctx.MT = MT
        return M @ v

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.MT @ grad, None, None


def _csr(rows: int, cols: int, vids: torch.Tensor, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (rows, cols) CSR matrix with coefficients coef (rows, K) at columns vids (rows, K), and its
    transpose."""
    K = vids.shape[-1]
    crow = torch.arange(0, rows * K + 1, K, device=vids.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        M = torch.sparse_csr_tensor(
            crow, vids.reshape(-1), coef.reshape(-1), (rows, cols), check_invariants=False
        )
        return M, M.t().to_sparse_csr()


class LoopPoser:
    """`BodyField.pose_sample` of N canonical points with the lookup's interpolation held.

    Each call offsets the field's V vertices by the shape and pose blend shapes (two mat-vecs) and
    interpolates the offsets at the points with a sparse (N, V) matrix built once per lookup (~15 ms for 10k
    points, 2 cores; was a dense per-point copy of the pose blend shapes, ~95 ms a lookup and ~1 ms less
    per iteration); joints come from the shape-dependent joint regression. Calling it poses the points x
    (N,3) (by default those of the lookup: then it equals pose_sample up to float rounding; moved points
    keep the lookup's blend shapes and weights). Differentiable w.r.t. the parameters and x.
    """

    def __init__(self, body_field: BodyField, sample: FieldSample, num_betas: int):
        f = body_field
        V = f.v_template.shape[0]
        self.M, self.MT = _csr(sample.vids.shape[0], V, sample.vids, sample.coef.detach())
        self.posedirs = f.posedirs  # (P, V*3)
        self.shapedirs = f.shapedirs[..., :num_betas]  # (V, 3, B)
        self.W = sample.weights.detach()  # (N, J)
        self.J0 = f.J_regressor @ f.v_template  # (J, 3)
        self.Jdirs = torch.einsum("jv,vkl->jkl", f.J_regressor, self.shapedirs)  # (J,3,B)
        self.parents = f.parents
        self.eye = torch.eye(3, dtype=f.v_template.dtype, device=f.v_template.device)

    def __call__(self, x: torch.Tensor, **params: torch.Tensor) -> torch.Tensor:
        """Posed points (N,3) for one parameter set (betas (1,B) or (B,), axis-angles, transl (3,))."""
        return self.pose(x, **params)[0]

    def pose(
        self,
        x: torch.Tensor,
        betas: torch.Tensor,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        transl: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed points (N,3) and each point's blended skinning rotation (N,3,3) (it turns canonical
        normals into posed ones)."""
        rot = batch_rodrigues(torch.cat([global_orient.reshape(-1, 3), body_pose.reshape(-1, 3)]))
        b = betas.reshape(-1)
        offsets = self.shapedirs @ b + ((rot[1:] - self.eye).reshape(1, -1) @ self.posedirs).reshape(-1, 3)
        xs = x + _Gather.apply(offsets, self.M, self.MT)
        _, A = batch_rigid_transform(rot[None], (self.J0 + self.Jdirs @ b)[None], self.parents, dtype=x.dtype)
        T = (self.W @ A[0].reshape(-1, 16)).reshape(-1, 4, 4)
        return (T[:, :3, :3] @ xs[..., None])[..., 0] + T[:, :3, 3] + transl.reshape(1, 3), T[:, :3, :3]


def geman_mcclure(r2: torch.Tensor, scale: float) -> torch.Tensor:
    """s^2 r^2 / (r^2 + s^2): ~r^2 for small residuals, saturating at s^2 for large ones (m^2)."""
    return scale**2 * r2 / (r2 + scale**2)


def clothed_r2(
    residual: torch.Tensor, rotation: torch.Tensor, normal: torch.Tensor, weight: float, margin_m: float
) -> torch.Tensor:
    """Squared loop residuals (N,) with the outward part beyond margin_m discounted: residual = scan point -
    posed point (N,3), rotation (N,3,3) the points' skinning rotations, normal (N,3) their canonical normals.
    The normal component r_n beyond the margin counts as margin + sqrt(weight) (r_n - margin); the
    tangential part and inward offsets count in full (the body may not come out through the cloth)."""
    r2 = residual.square().sum(-1)
    if weight == 1.0:
        return r2
    n = (rotation.detach() @ normal[..., None])[..., 0]
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    rn = (residual * n).sum(-1)
    tangential = (r2 - rn.square()).clamp_min(0)
    rn_eff = torch.where(rn > margin_m, margin_m + weight**0.5 * (rn - margin_m), rn)
    return tangential + rn_eff.square()


def _schedule(start: float, end: float, frac: float) -> float:
    """Geometric interpolation from start (frac 0) to end (frac 1)."""
    if start <= 0 or end <= 0:
        return start + (end - start) * min(max(frac, 0.0), 1.0)
    return start * (end / start) ** min(max(frac, 0.0), 1.0)


def fit_loop(
    model: BodyModel,
    body_field: BodyField,
    scan: torch.Tensor,
    canon: torch.Tensor,
    weights: torch.Tensor,
    global_orient: torch.Tensor,
    transl: torch.Tensor,
    cfg: LoopFitConfig | None = None,
    progress: Progress | None = None,
) -> LoopFitResult:
    """Fit the body to scan points (N,3) through their canonical correspondences canon (N,3), weights (N,).

    All in the normalised model frame; global_orient (3,) axis-angle and transl (3,) start the fit (smplx
    convention: rotation about the root joint, then translation). Runs on the field's device.
    `progress(stage, fraction)` is called with stage "fit_loop" every 10 iterations.
    """
    cfg = cfg or LoopFitConfig()
    report = progress or (lambda stage, frac: None)
    total, done = max(cfg.rigid_iters + cfg.iters_a + cfg.iters_b, 1), 0

    def tick() -> None:
        nonlocal done
        done += 1
        if done % 10 == 0:
            report("fit_loop", done / total)

    ref = body_field.v_template
    dev, dt = ref.device, ref.dtype
    scan, canon = scan.to(dev, dt).reshape(-1, 3), canon.to(dev, dt).reshape(-1, 3)
    w = weights.to(dev, dt).reshape(-1).clamp_min(0)
    w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / max(len(w), 1))
    nb = model.num_betas
    params = {
        "betas": torch.zeros(nb, device=dev, dtype=dt),
        "global_orient": global_orient.to(dev, dt).reshape(3).clone(),
        "body_pose": torch.zeros(69, device=dev, dtype=dt),
        "transl": transl.to(dev, dt).reshape(3).clone(),
    }
    if cfg.prior not in ("mixture", "gaussian"):
        raise ValueError(f"prior must be mixture or gaussian, not {cfg.prior!r}")
    prior = pose_mixture() if cfg.prior == "mixture" else pose_prior()
    if cfg.start_at_prior:
        params["body_pose"] = pose_prior().body_pose.to(dev, dt)
    for p in params.values():
        p.requires_grad_(True)

    def priors() -> torch.Tensor:
        bp = params["body_pose"]
        return (
            cfg.limit_weight * limit_violation(bp[None]).sum()
            + cfg.pose_weight * bp.square().sum()
            + cfg.prior_weight * prior.cost(bp)
            + cfg.shape_weight * params["betas"].square().sum()
        )

    stage_losses: dict[str, float] = {}
    # stage A: fixed correspondences, one lookup -------------------------------------------------------
    normals = vertex_normals(body_field.v_template, body_field.faces)
    with torch.no_grad():
        sample = body_field.lookup(canon)
        poser = LoopPoser(body_field, sample, nb)
        n_canon = BodyField.interp(sample.vids, sample.coef, normals)
    opt = torch.optim.Adam([params["global_orient"], params["transl"]], lr=cfg.lr)
    r2 = None
    for _ in range(cfg.rigid_iters):
        r2 = (poser(canon, **params) - scan).square().sum(-1)
        loss = (w * geman_mcclure(r2, cfg.robust_start_m)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tick()
        stage_losses["rigid"] = float(loss.detach())
    opt = torch.optim.Adam(list(params.values()), lr=cfg.lr)
    for it in range(cfg.iters_a):
        frac = it / max(cfg.iters_a - 1, 1)
        opt.param_groups[0]["lr"] = _schedule(cfg.lr, cfg.lr * cfg.lr_decay, frac)
        posed, rot = poser.pose(canon, **params)
        residual = scan - posed
        r2 = residual.square().sum(-1)
        fit_r2 = clothed_r2(residual, rot, n_canon, cfg.outside_weight, cfg.outside_margin_m)
        scale = _schedule(cfg.robust_start_m, cfg.robust_end_m, frac)
        loss = (w * geman_mcclure(fit_r2, scale)).sum() + priors()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tick()
        stage_losses["a"] = float(loss.detach())

    agreement = 0.0
    if r2 is not None:
        agreement = float((w * (r2.detach() < cfg.agree_m**2)).sum())

    # stage B: free correspondences ----------------------------------------------------------------------
    x = canon.clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": list(params.values())}, {"params": [x]}], lr=cfg.lr_b)
    moved = torch.zeros(len(x), dtype=torch.bool, device=dev)
    x0 = n0 = d0 = None

    def surface_r2() -> torch.Tensor:
        """|x - closest(x)|^2 with closest linearised at the last lookup: the normal offset counts."""
        return (d0 + n0 * ((x - x0) * n0).sum(-1, keepdim=True)).square().sum(-1)

    for it in range(cfg.iters_b):
        relook = it % max(cfg.relookup_every, 1) == 0
        if cfg.reassign and r2 is not None and it % max(cfg.reassign_every, 1) == 0:
            hit = _reassign(model, params, scan, x, r2.detach(), opt, cfg, body_field.v_template)
            moved |= hit
            relook = relook or bool(hit.any())
        if relook:
            with torch.no_grad():
                sample = body_field.lookup(x)
                poser = LoopPoser(body_field, sample, nb)
                x0, d0 = x.detach().clone(), x.detach() - sample.closest
                n0 = BodyField.interp(sample.vids, sample.coef, normals)
                n0 = n0 / n0.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        frac = it / max(cfg.iters_b - 1, 1)
        opt.param_groups[0]["lr"] = _schedule(cfg.lr_b, cfg.lr_b * cfg.lr_decay, frac)
        opt.param_groups[1]["lr"] = _schedule(cfg.lr_canon, cfg.lr_canon * cfg.lr_decay, frac)
        posed, rot = poser.pose(x, **params)
        residual = scan - posed
        r2 = residual.square().sum(-1)
        fit_r2 = clothed_r2(residual, rot, n0, cfg.outside_weight, cfg.outside_margin_m)
        data = geman_mcclure(fit_r2, cfg.robust_b_m) + cfg.surface_weight * surface_r2()
        loss = (w * data).sum() + priors()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tick()

    # final objective, with a fresh lookup at the final points ---------------------------------------------
    with torch.no_grad():
        sample = body_field.lookup(x)
        if cfg.outside_weight == 1.0:
            r2 = body_field.pose_sample(x, sample, **{k: v[None] for k, v in params.items()})[0] - scan
            r2 = r2.square().sum(-1)
        else:  # clothing discounted in the objective and the inliers too
            posed, rot = LoopPoser(body_field, sample, nb).pose(x, **params)
            n_final = BodyField.interp(sample.vids, sample.coef, normals)
            r2 = clothed_r2(scan - posed, rot, n_final, cfg.outside_weight, cfg.outside_margin_m)
        scale = cfg.robust_b_m if cfg.iters_b else cfg.robust_end_m
        surface = (x - sample.closest).square().sum(-1) if cfg.iters_b else torch.zeros_like(r2)
        final = float((w * (geman_mcclure(r2, scale) + cfg.surface_weight * surface)).sum() + priors())
        inliers = float((w * (r2 < cfg.inlier_m**2)).sum())
    if cfg.iters_b:
        stage_losses["b"] = final
    report("fit_loop", 1.0)
    return LoopFitResult(
        **{k: v.detach() for k, v in params.items()},
        canon=x.detach(),
        loss=final,
        stage_losses=stage_losses,
        agreement=agreement,
        inliers=inliers,
        reassigned=int(moved.sum()),
    )


@torch.no_grad()
def _reassign(
    model: BodyModel,
    params: dict[str, torch.Tensor],
    scan: torch.Tensor,
    x: torch.Tensor,
    r2: torch.Tensor,
    opt: torch.optim.Optimizer,
    cfg: LoopFitConfig,
    template: torch.Tensor,
) -> torch.Tensor:
    """Give suspect correspondences the canonical position of the posed body's nearest vertex, in place.

    Suspect: the loop residual exceeds reassign_far_m while the scan point is within reassign_near_m of the
    posed body (the body is there, the correspondence disagrees with it). Returns the mask (N,).
    """
    verts = model(**{k: v.detach()[None] for k, v in params.items()}).vertices[0]
    dist, vid = cKDTree(verts.cpu().numpy()).query(scan.cpu().numpy(), k=1, workers=kd_workers())
    dist = torch.as_tensor(dist, device=x.device, dtype=x.dtype)
    vid = torch.as_tensor(np.asarray(vid, dtype=np.int64), device=x.device)
    hit = (r2 > cfg.reassign_far_m**2) & (dist < cfg.reassign_near_m)
    x[hit] = template[vid[hit]]
    state = opt.state.get(x, {})
    for key in ("exp_avg", "exp_avg_sq"):  # moved points start their Adam moments afresh
        if key in state:
            state[key][hit] = 0
    return hit


def loop_anchor(
    body_field: BodyField,
    scan: torch.Tensor,
    result: LoopFitResult,
    weights: torch.Tensor,
    scale_m: float,
    weight: float,
    outside_weight: float = 1.0,
    outside_margin_m: float = 0.01,
) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """The loop loss of a loop fit's final correspondences as a function of (K, n) parameters -> (K,).

    weight * sum_i w_i rho(|W(x_i; theta, beta) + t - p_i|), Geman-McClure with scale_m. For
    `fit_surface(anchor=...)`: it keeps the surface fit near the correspondences' answer (under clothing).
    With outside_weight < 1 the residuals are `clothed_r2`'s.
    """
    ref = body_field.v_template
    x = result.canon.to(ref.device, ref.dtype)
    scan = scan.to(ref.device, ref.dtype).reshape(-1, 3)
    w = weights.to(ref.device, ref.dtype).reshape(-1).clamp_min(0)
    w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / max(len(w), 1))
    with torch.no_grad():
        sample = body_field.lookup(x)
        poser = LoopPoser(body_field, sample, result.betas.shape[-1])
        normals = vertex_normals(body_field.v_template, body_field.faces)
        n_canon = BodyField.interp(sample.vids, sample.coef, normals)

    def anchor(params: dict[str, torch.Tensor]) -> torch.Tensor:
        K = params["transl"].shape[0]
        out = []
        for k in range(K):  # hypotheses (one when started from a loop fit)
            posed, rot = poser.pose(x, **{key: params[key][k] for key in PARAM_KEYS})
            r2 = clothed_r2(scan - posed, rot, n_canon, outside_weight, outside_margin_m)
            out.append((w * geman_mcclure(r2, scale_m)).sum())
        return weight * torch.stack(out)

    return anchor
