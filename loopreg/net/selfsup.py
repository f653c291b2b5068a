"""Self-supervised loop training on unlabelled scans (`loopreg train selfsup`), LoopReg's second stage.

Phase 1, per-scan parameters (network fixed): every scan is normalised and registered by the test-time loop
fit (orientation search, correspondences, robust Procrustes, loop fit through the diffused body field), which
gives betas, global_orient, body_pose, transl per scan in the scan's normalised frame.

Phase 2, joint: each step takes a batch of scans, turned to their fitted root orientation (+ the warm start's
jitter, scale and shift), and minimises
    loop     |W(f(p); theta, beta) + t - p|          the body field poses the predicted canonical points
    surface  |f(p) - closest canonical surface point|
    chamfer  scan <-> posed body vertices, both ways (reaches the parameters only)
    self     cross-entropy + L1 to the part / canonical point of each scan point's closest point on the
             current posed body (the fitted body labels the scan; recomputed every step)
    priors   limit_violation(body_pose), |beta|^2
with gradients to the network and to the batch's parameters. With `labelled` data each step also takes a
supervised batch (losses of the warm start, orientation score included), LoopReg's semi-supervised setting.
The state (per-scan parameters, step, network and optimiser) is saved every `save_every` steps and resumed
from. GT is never read: only scan files (any format `load_scan` reads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from loopreg.body.model import PARAM_KEYS
from loopreg.net.data import (
    axis_angle_rotations,
    batch,
    label_points,
    root_rotations,
    score_batch,
    turn_scale_shift,
)
from loopreg.net.model import CorrNet
from loopreg.net.train import load_weights, losses, save_weights


@dataclass
class SelfSupConfig:
    steps: int = 300  # joint steps (phase 2)
    n_points: int = 2048  # points kept per scan (fit and training)
    batch_size: int = 4  # unlabelled scans per step
    labelled_batch: int = 8  # labelled scans per step (when labelled data is given)
    lr_net: float = 3e-4
    lr_params: float = 1e-3  # per-scan parameters (radians, metres, betas); one Adam step per visit
    jitter_deg: float = 25.0
    canon_weight: float = 10.0  # as in the warm start
    w_loop: float = 10.0
    w_surface: float = 10.0
    w_chamfer: float = 1.0
    w_self: float = 1.0
    w_pose: float = 0.1
    w_shape: float = 1e-3
    score_weight: float = 0.5
    min_inliers: float = 0.6  # scans whose phase-1 fit keeps fewer inliers are left out (failed fits)
    save_every: int = 50
    seed: int = 0


def find_scans(root: Path) -> list[Path]:
    from loopreg.data.scan_io import SUPPORTED

    return sorted(
        p for p in Path(root).rglob("*") if p.suffix.lower() in SUPPORTED and not p.name.startswith("gt")
    )


def load_points(paths: list[Path], n: int, seed: int) -> np.ndarray:
    """(S, n, 3) normalised points (metres, centred, up guessed) of each scan."""
    from loopreg.data.normalise import normalise
    from loopreg.data.scan_io import load_scan

    out = []
    for i, p in enumerate(paths):  # file I/O per scan
        pts = load_scan(p).points
        pts = normalise(pts).apply(pts)
        rng = np.random.default_rng([seed, i])
        out.append(pts[rng.choice(len(pts), size=n, replace=len(pts) < n)])
    return np.stack(out).astype(np.float32)


def fit_params(net: CorrNet, model, body_field, points: np.ndarray, seed: int = 0, log=print) -> dict:
    """Phase 1: the test-time loop fit of every scan with the network fixed -> per-scan parameters (S, ...)
    and the fit's inlier share (S,)."""
    from loopreg.fit.loop import fit_loop
    from loopreg.fit.pipeline import correspondences

    rows: dict[str, list] = {k: [] for k in (*PARAM_KEYS, "inliers")}
    t0 = time.perf_counter()
    for i, pts in enumerate(points):  # one registration per scan; each is batched torch
        corr = correspondences(net, model, pts, seed)
        orient, transl = corr["extra_init"]
        scan = torch.as_tensor(pts)
        res = fit_loop(model, body_field, scan, corr["corr"], corr["corr_weights"], orient, transl)
        for k in PARAM_KEYS:
            rows[k].append(getattr(res, k).detach().reshape(-1))
        rows["inliers"].append(torch.tensor(res.inliers))
        if (i + 1) % 25 == 0 or i + 1 == len(points):
            log(f"fit {i + 1}/{len(points)} scans {time.perf_counter() - t0:.0f}s")
    return {k: torch.stack(v) for k, v in rows.items()}


@torch.no_grad()
def self_labels(model, body: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Part (B,N) and canonical point (B,N,3) of each scan point's closest point on the posed bodies
    (B,V,3) (`posed_vertices`)."""
    verts = body.detach().cpu().numpy().astype(np.float64)
    faces, parts = model.faces.cpu().numpy(), model.parts.cpu().numpy()
    template = model.v_template.cpu().numpy().astype(np.float64)
    P, C = [], []
    scans = points.cpu().numpy().astype(np.float64)
    for v, p in zip(verts, scans, strict=True):  # one closest-triangle query per scan
        part, canon, _ = label_points(p, v, faces, parts, template)
        P.append(part)
        C.append(canon)
    dev = points.device
    return torch.as_tensor(np.stack(P), device=dev), torch.as_tensor(np.stack(C), device=dev)


def posed_vertices(model, p: dict) -> torch.Tensor:
    out = model(betas=p["betas"], global_orient=p["global_orient"], body_pose=p["body_pose"])
    return out.vertices + p["transl"][:, None]


def loop_terms(field, body: torch.Tensor, pts: torch.Tensor, canon: torch.Tensor, p: dict) -> dict:
    """The loop, surface, chamfer and prior terms for scans (B,N,3) with predicted canonical points, their
    parameters p and posed bodies (B,V,3) (`posed_vertices(model, p)`)."""
    from loopreg.data.poses import limit_violation

    sample = field.lookup(canon)
    posed = field.pose_sample(canon, sample, p["betas"], p["global_orient"], p["body_pose"])
    posed = posed + p["transl"][:, None]
    d = torch.cdist(pts, body[:, ::4])  # every 4th vertex is plenty for a chamfer
    return {
        "loop": (posed - pts).norm(dim=-1).mean(),
        "surface": (canon - sample.closest).norm(dim=-1).mean(),
        "chamfer": d.amin(2).mean() + d.amin(1).mean(),
        "pose": limit_violation(p["body_pose"]).mean(),
        "shape": p["betas"].square().mean(),
    }


def oriented_input(
    pts: torch.Tensor, global_orient: torch.Tensor, gen: torch.Generator, jitter_deg: float
) -> torch.Tensor:
    """Network input: scan points turned to the fitted root frame, then jittered, scaled and shifted
    like the warm start's batches (the network's output does not depend on the frame)."""
    R = root_rotations(global_orient.detach().cpu().numpy()).to(pts)
    return turn_scale_shift(pts @ R, axis_angle_rotations(len(pts), gen, jitter_deg).to(pts), gen)


def selfsup(
    scans: Path,
    init: Path,
    out: Path,
    state_path: Path,
    cfg: SelfSupConfig,
    device: str = "cpu",
    labelled: Path | None = None,
    max_labelled: int | None = None,
    log=print,
) -> dict:
    from loopreg.body import BodyModel
    from loopreg.body.field import BodyField
    from loopreg.net.data import ShardDataset

    paths = find_scans(scans)
    if not paths:
        raise FileNotFoundError(f"no scan files under {scans}")
    torch.manual_seed(cfg.seed)
    model = BodyModel.load().to(device)
    field = BodyField.for_model(model.data).to(device)
    names = [str(p.relative_to(scans)) for p in paths]
    net = load_weights(init, device)
    net_opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr_net, weight_decay=1e-5)
    state = torch.load(state_path, weights_only=True) if Path(state_path).exists() else None
    t0 = time.perf_counter()
    if state is not None and state["names"] == names:
        points, params, step0 = state["points"], state["params"], state["step"]
        if state.get("net") is not None:
            net.load_state_dict(state["net"])
            net_opt.load_state_dict(state["opt"])
        log(f"resumed at step {step0} from {state_path}")
    else:
        points = torch.as_tensor(load_points(paths, cfg.n_points, cfg.seed))
        params = fit_params(net.eval(), model, field, points.numpy(), cfg.seed, log)
        step0 = 0
        torch.save({"names": names, "points": points, "params": params, "step": 0, "net": None, "opt": None,
                    "config": asdict(cfg)}, state_path)  # fmt: skip
    keep = torch.nonzero(params["inliers"] >= cfg.min_inliers)[:, 0]
    if len(keep) == 0:
        raise RuntimeError(f"no scan under {scans} was fitted with >= {cfg.min_inliers:.0%} inliers")
    log(f"phase 1: {len(keep)}/{len(paths)} scans fitted with >= {cfg.min_inliers:.0%} inliers")
    points = points.to(device)
    params = {k: v.to(device) for k, v in params.items()}
    sup = ShardDataset(labelled, max_labelled) if labelled else None
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + step0)
    history: list[dict] = []
    totals: dict[str, float] = {}
    net.train()
    for step in range(step0 + 1, cfg.steps + 1):
        idx = keep[torch.randint(len(keep), (cfg.batch_size,), generator=gen)].to(device)
        pts = points[idx]
        p = {k: params[k][idx].clone().requires_grad_(True) for k in PARAM_KEYS}
        body = posed_vertices(model, p)
        parts, canon_t = self_labels(model, body, pts)
        o = net(oriented_input(pts, p["global_orient"], gen, cfg.jitter_deg))
        terms = loop_terms(field, body, pts, o.canon, p)
        terms["self"] = losses(o, parts, canon_t, cfg.canon_weight)["total"]
        total = sum(getattr(cfg, f"w_{k}") * v for k, v in terms.items())
        if sup is not None:
            ids = torch.randint(len(sup), (cfg.labelled_batch,), generator=gen)
            x, y, c = (t.to(device) for t in batch(sup, ids, cfg.n_points, gen, cfg.jitter_deg))
            terms["sup"] = losses(net(x), y, c, cfg.canon_weight)["total"]
            sp, label = score_batch(sup, ids, net.cfg.score_points, gen, cfg.jitter_deg)
            terms["score"] = F.binary_cross_entropy_with_logits(net.score(sp.to(device)), label.to(device))
            total = total + terms["sup"] + cfg.score_weight * terms["score"]
        net_opt.zero_grad(set_to_none=True)
        param_opt = torch.optim.Adam(p.values(), lr=cfg.lr_params)
        total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        net_opt.step()
        param_opt.step()
        for k in PARAM_KEYS:
            params[k][idx] = p[k].detach()
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + v.item()
        if step % 25 == 0 or step == cfg.steps:
            n = 25 if step % 25 == 0 else step % 25
            history.append({"step": step, **{k: round(v / n, 5) for k, v in totals.items()}})
            totals = {}
            log(f"selfsup {history[-1]} {time.perf_counter() - t0:.0f}s")
        if step % cfg.save_every == 0 or step == cfg.steps:
            torch.save({"names": names, "points": points.cpu(), "step": step, "net": net.state_dict(),
                        "opt": net_opt.state_dict(), "config": asdict(cfg),
                        "params": {k: v.cpu() for k, v in params.items()}}, state_path)  # fmt: skip
            meta = {"selfsup": asdict(cfg), "history": history, "init": str(init), "scans": len(paths),
                    "scans_used": len(keep), "labelled": str(labelled) if labelled else None}  # fmt: skip
            save_weights(out, net, meta)
    return {"scans": len(paths), "scans_used": len(keep), "history": history,
            "seconds": time.perf_counter() - t0, "weights": str(out)}  # fmt: skip
