"""Supervised warm start of CorrNet on cached synthetic shards (`loopreg train warmup`).

Loss (LoopReg's warm start): part cross-entropy + L1 of the blended canonical point + L1 of the GT part's
own regression head, on points turned to the body's canonical orientation and jittered by up to
`jitter_deg` (what the orientation search leaves); plus the orientation score's binary cross-entropy on
small subsets, canonically oriented or not (`score_batch`). Adam with cosine decay; keeps the best
checkpoint by validation loss on held-out scans.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from loopreg.net.data import ShardDataset, batch, score_batch
from loopreg.net.model import CorrNet, NetConfig, NetOutput


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 8
    n_points: tuple[int, int] = (2048, 2560)  # points per scan, drawn per step (at most those stored)
    lr: float = 2e-3
    weight_decay: float = 1e-5
    canon_weight: float = 10.0
    jitter_deg: float = 25.0  # rotation about the canonical orientation (what the orientation search leaves)
    score_batch: int = 16  # subsets per step for the orientation score
    score_weight: float = 0.5
    val_scans: int = 40
    val_every: int = 250
    seed: int = 0
    max_scans: int | None = None  # use only the first scans (the 10% labelled experiment)


def losses(
    out: NetOutput, parts: torch.Tensor, canon: torch.Tensor, canon_weight: float
) -> dict[str, torch.Tensor]:
    ce = F.cross_entropy(out.logits.flatten(0, 1), parts.flatten())
    blended = (out.canon - canon).abs().sum(-1).mean()
    own = torch.gather(out.part_canon, 2, parts[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]
    head = (own - canon).abs().sum(-1).mean()
    return {"ce": ce, "canon": blended, "head": head, "total": ce + canon_weight * (blended + head)}


@torch.no_grad()
def metrics(out: NetOutput, parts: torch.Tensor, canon: torch.Tensor) -> dict[str, float]:
    err = (out.canon - canon).norm(dim=-1) * 100
    return {
        "part_accuracy": float((out.parts == parts).float().mean()),
        "corr_err_cm_median": float(err.median()),
        "corr_err_cm_mean": float(err.mean()),
    }


def save_weights(path: Path, net: CorrNet, meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"config": net.cfg.to_dict(), "state_dict": state, "meta": meta}, tmp)
    tmp.replace(path)
    return path


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> CorrNet:
    ckpt = torch.load(Path(path), map_location=device, weights_only=True)
    net = CorrNet(NetConfig.from_dict(ckpt["config"])).to(device)
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def warmup(
    data: Path,
    out: Path,
    cfg: TrainConfig,
    net_cfg: NetConfig | None = None,
    device: str = "cpu",
    init: Path | None = None,
    log=print,
) -> dict:
    """Train from scratch (or from `init`) on the shards under `data`; returns a summary dict."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ds = ShardDataset(data)
    n_val = min(cfg.val_scans, len(ds) // 5)
    n_train = len(ds) - n_val if cfg.max_scans is None else min(cfg.max_scans, len(ds) - n_val)
    train_idx, val_idx = torch.arange(n_train), torch.arange(len(ds) - n_val, len(ds))
    net = load_weights(init, device).train() if init else CorrNet(net_cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    )
    val_gen = torch.Generator().manual_seed(12345)
    val = [batch(ds, val_idx[i : i + cfg.batch_size], net.cfg.n_points, val_gen, cfg.jitter_deg)
           for i in range(0, n_val, cfg.batch_size)]  # fmt: skip
    val_score = [score_batch(ds, val_idx[i : i + 16], net.cfg.score_points, val_gen, cfg.jitter_deg)
                 for i in range(0, n_val, 16)]  # fmt: skip
    best, history, t0 = math.inf, [], time.perf_counter()
    meta = {"train": {**asdict(cfg), "n_train_scans": n_train, "n_val_scans": n_val, "data": str(data),
                      "init": str(init) if init else None},
            "device": str(device)}  # fmt: skip
    for step in range(1, cfg.steps + 1):
        idx = train_idx[torch.randint(n_train, (cfg.batch_size,), generator=gen)]
        n = int(torch.randint(cfg.n_points[0], cfg.n_points[1] + 1, (1,), generator=gen))
        pts, parts, canon = (t.to(device) for t in batch(ds, idx, n, gen, cfg.jitter_deg))
        loss = losses(net(pts), parts, canon, cfg.canon_weight)
        sidx = train_idx[torch.randint(n_train, (cfg.score_batch,), generator=gen)]
        spts, label = score_batch(ds, sidx, net.cfg.score_points, gen, cfg.jitter_deg)
        loss["score"] = F.binary_cross_entropy_with_logits(net.score(spts.to(device)), label.to(device))
        loss["total"] = loss["total"] + cfg.score_weight * loss["score"]
        opt.zero_grad(set_to_none=True)
        loss["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0:
            log(f"step {step}/{cfg.steps} " + " ".join(f"{k}={v.item():.4f}" for k, v in loss.items())
                + f" {time.perf_counter() - t0:.0f}s")  # fmt: skip
        if step % cfg.val_every == 0 or step == cfg.steps:
            m = (
                evaluate_batches(net, val, cfg.canon_weight, device)
                if val
                else {"loss": loss["total"].item()}
            )
            if val_score:
                m["score_accuracy"] = evaluate_score(net, val_score, device)
            m.update(step=step, seconds=round(time.perf_counter() - t0, 1))
            history.append(m)
            log("val " + json.dumps(m))
            if m["loss"] < best:
                best = m["loss"]
                save_weights(out, net, {**meta, "val": m, "history": history})
    return {"val": history[-1] if history else {}, "best_val_loss": best, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def evaluate_batches(net: CorrNet, batches: list, canon_weight: float, device: str) -> dict[str, float]:
    net.eval()
    acc: dict[str, float] = {}
    for pts, parts, canon in batches:
        pts, parts, canon = pts.to(device), parts.to(device), canon.to(device)
        out = net(pts)
        m = {**metrics(out, parts, canon), "loss": float(losses(out, parts, canon, canon_weight)["total"])}
        for k, v in m.items():
            acc[k] = acc.get(k, 0.0) + v / len(batches)
    net.train()
    return {k: round(v, 5) for k, v in acc.items()}


@torch.no_grad()
def evaluate_score(net: CorrNet, batches: list, device: str) -> float:
    """Accuracy of the orientation score (logit > 0 <=> canonically oriented) on validation subsets."""
    net.eval()
    hits = [((net.score(p.to(device)) > 0).float().cpu() == y).float().mean() for p, y in batches]
    net.train()
    return round(float(torch.stack(hits).mean()), 4)
