"""Self-supervised loop training on unlabelled scans (`loopreg train selfsup`), LoopReg's second stage.

Each scan keeps its own parameters (betas, global_orient, body_pose, transl, log_scale) between epochs; they
start from a weighted Procrustes of the network's canonical points onto the scan points. Per batch of scans:
    loop     |s * W(f(p); theta, beta) + t - p|          (the body field poses the predicted canonical points)
    surface  |f(p) - closest canonical surface point|    (predictions stay near the rest template)
    chamfer  scan <-> posed body vertices, both ways
    priors   limit_violation(body_pose), |beta|^2
Phases (LoopReg): `param_epochs` epochs optimise the per-scan parameters only (network fixed), then the
network and the parameters jointly. The state (per-scan parameters, epoch, network weights) is written after
every epoch and resumed from. GT is never read: only scan files (any format `load_scan` reads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from loopreg.net.model import CorrNet
from loopreg.net.train import load_weights, save_weights

PARAM_KEYS = ("betas", "global_orient", "body_pose", "transl", "log_scale")


@dataclass
class SelfSupConfig:
    epochs: int = 5
    param_epochs: int = 2  # phase 1: per-scan parameters only
    n_points: int = 2048
    batch_size: int = 4
    inner_steps: int = 20  # parameter steps per batch and epoch
    lr_params: float = 0.02
    lr_net: float = 1e-4
    w_loop: float = 1.0
    w_surface: float = 1.0
    w_chamfer: float = 1.0
    w_pose: float = 0.1
    w_shape: float = 1e-3
    seed: int = 0


def find_scans(root: Path) -> list[Path]:
    from loopreg.data.scan_io import SUPPORTED

    return sorted(
        p for p in Path(root).rglob("*") if p.suffix.lower() in SUPPORTED and not p.name.startswith("gt")
    )


def load_points(paths: list[Path], n: int, seed: int, net: CorrNet) -> torch.Tensor:
    """(S, n, 3) normalised points (metres, centred) of each scan, turned by the orientation search so the
    body stands up and faces +z (where CorrNet works); the per-scan parameters live in that frame."""
    from loopreg.data.normalise import normalise
    from loopreg.data.scan_io import load_scan
    from loopreg.net.orient import search

    out = []
    for i, p in enumerate(paths):  # file I/O per scan
        pts = load_scan(p).points
        pts = normalise(pts).apply(pts)
        rng = np.random.default_rng([seed, i])
        pts = pts[rng.choice(len(pts), size=n, replace=len(pts) < n)]
        out.append(pts @ search(net, pts, seed)[0])
    return torch.as_tensor(np.stack(out), dtype=torch.float32)


def procrustes(
    src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted similarity dst ~ s R src + t per batch: R (B,3,3), t (B,3), s (B,)."""
    w = w / w.sum(1, keepdim=True)
    mu_s, mu_d = (w[..., None] * src).sum(1), (w[..., None] * dst).sum(1)
    a, b = src - mu_s[:, None], dst - mu_d[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", w, b, a)
    U, S, Vt = torch.linalg.svd(cov)
    d = torch.sign(torch.det(U @ Vt))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = U @ D @ Vt
    var = (w * a.square().sum(-1)).sum(1)
    s = (S * D.diagonal(dim1=-2, dim2=-1)).sum(-1) / var.clamp_min(1e-9)
    return R, mu_d - s[:, None] * (R @ mu_s[..., None])[..., 0], s


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    from loopreg.data.poses import quat_to_aa

    w = (1 + R.diagonal(dim1=-2, dim2=-1).sum(-1)).clamp_min(1e-8).sqrt() / 2
    xyz = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1
    )
    q = torch.cat([w[..., None], xyz / (4 * w[..., None])], -1)
    return quat_to_aa(q / q.norm(dim=-1, keepdim=True))


@torch.no_grad()
def init_params(net: CorrNet, points: torch.Tensor, num_betas: int) -> dict[str, torch.Tensor]:
    """Per-scan parameters from the network's correspondences (rest pose, Procrustes for R, t, s)."""
    S = len(points)
    out = net.eval()(points)
    conf = out.logits.softmax(-1).amax(-1)
    R, t, s = procrustes(out.canon, points, conf)
    return {"betas": torch.zeros(S, num_betas), "global_orient": matrix_to_axis_angle(R),
            "body_pose": torch.zeros(S, 69), "transl": t, "log_scale": s.clamp(0.5, 2.0).log()}  # fmt: skip


def loop_losses(
    net: CorrNet, field, model, pts: torch.Tensor, p: dict[str, torch.Tensor], cfg: SelfSupConfig, canon=None
):
    """The self-supervised terms for a batch of scans (B,N,3) and their parameters."""
    from loopreg.data.poses import limit_violation

    canon = net(pts).canon if canon is None else canon
    scale = p["log_scale"].exp()[:, None, None]
    sample = field.lookup(canon)
    posed = field.pose_sample(canon, sample, p["betas"], p["global_orient"], p["body_pose"])
    posed = scale * posed + p["transl"][:, None]
    body = model(betas=p["betas"], global_orient=p["global_orient"], body_pose=p["body_pose"]).vertices
    body = scale * body + p["transl"][:, None]
    d = torch.cdist(pts, body)
    terms = {
        "loop": (posed - pts).norm(dim=-1).mean(),
        "surface": (canon - sample.closest).norm(dim=-1).mean(),
        "chamfer": d.amin(2).mean() + d.amin(1).mean(),
        "pose": limit_violation(p["body_pose"]).mean(),
        "shape": p["betas"].square().mean(),
    }
    terms["total"] = sum(getattr(cfg, f"w_{k}") * v for k, v in terms.items())
    return terms


def selfsup(
    scans: Path, init: Path, out: Path, state_path: Path, cfg: SelfSupConfig, device: str = "cpu", log=print
) -> dict:
    from loopreg.body import BodyModel
    from loopreg.body.field import BodyField

    paths = find_scans(scans)
    if not paths:
        raise FileNotFoundError(f"no scan files under {scans}")
    model = BodyModel.load().to(device)
    field = BodyField.for_model(model.data).to(device)
    names = [str(p.relative_to(scans)) for p in paths]
    net = load_weights(init, device)
    points = load_points(paths, cfg.n_points, cfg.seed, net).to(device)  # oriented by the initial network
    state = torch.load(state_path, weights_only=True) if Path(state_path).exists() else None
    if state is not None and state["names"] == names:
        net.load_state_dict(state["net"])
        params, epoch0 = state["params"], state["epoch"]
        log(f"resumed at epoch {epoch0} from {state_path}")
    else:
        params = init_params(net, points, model.num_betas)
        epoch0 = 0
    net_opt = torch.optim.Adam(net.parameters(), lr=cfg.lr_net)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, t0 = [], time.perf_counter()
    for epoch in range(epoch0, cfg.epochs):
        joint = epoch >= cfg.param_epochs
        net.train(joint)
        totals: dict[str, float] = {}
        order = torch.randperm(len(paths), generator=gen)
        for b in range(0, len(order), cfg.batch_size):  # batches of scans; each step is vectorised
            idx = order[b : b + cfg.batch_size]
            pts = points[idx]
            p = {k: params[k][idx].clone().requires_grad_(True) for k in PARAM_KEYS}
            opt = torch.optim.Adam(p.values(), lr=cfg.lr_params)
            fixed = None if joint else net(pts).canon.detach()
            for _ in range(cfg.inner_steps):
                terms = loop_losses(net, field, model, pts, p, cfg, fixed)
                opt.zero_grad(set_to_none=True)
                net_opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                if joint:
                    net_opt.step()
            for k in PARAM_KEYS:
                params[k][idx] = p[k].detach()
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v.item() * len(idx) / len(paths)
        history.append({"epoch": epoch + 1, "joint": joint, **{k: round(v, 5) for k, v in totals.items()}})
        log(f"selfsup {history[-1]} {time.perf_counter() - t0:.0f}s")
        torch.save({"names": names, "params": params, "epoch": epoch + 1, "net": net.state_dict(),
                    "config": asdict(cfg)}, state_path)  # fmt: skip
        save_weights(
            out, net, {"selfsup": asdict(cfg), "history": history, "init": str(init), "scans": len(paths)}
        )
    return {"scans": len(paths), "history": history, "seconds": time.perf_counter() - t0, "weights": str(out)}
