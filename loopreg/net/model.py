"""CorrNet: a compact point network for LoopReg's correspondences (part logits + canonical point per point).

Encoder: DGCNN-lite on a subsample (default 5000 points). Points are normalised (centre at the bounding-box
centre, scale by the robust radius), a static kNN graph (k=16) in xyz is built once, and three EdgeConv
layers aggregate max_j relu(A f_i + B (f_j - f_i)); the edge linear map is split so it runs on points,
not on edges (only a gather + max per edge). A global max-pooled feature gives each point body context.
Head: per point, 14 part logits and 14 part-specific canonical regressions blended by the part
probabilities (LoopReg). Canonical points are in the model's rest-template frame (metres).

Dense prediction for a whole scan (`predict`): the encoder runs on the subsample and every scan point takes
the output of its nearest subsampled point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loopreg.body.parts import NUM_PARTS
from loopreg.threads import kd_workers

if TYPE_CHECKING:
    from loopreg.net.correspond import Prediction


@dataclass
class NetConfig:
    k: int = 16
    widths: tuple[int, ...] = (64, 128, 128)
    global_dim: int = 256
    head_dim: int = 256
    n_points: int = 4096  # subsample for inference
    coarse: tuple[int, ...] = (8, 64)  # coarse levels (every 8th, 64th point) with long-range EdgeConvs
    coarse_dim: int = 128
    score_points: int = 256  # subset size of the orientation score (training and search)

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths), "coarse": list(self.coarse)}

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        return cls(**{**d, "widths": tuple(d["widths"]), "coarse": tuple(d["coarse"])})


@dataclass
class NetOutput:
    logits: torch.Tensor  # (B, N, 14)
    part_canon: torch.Tensor  # (B, N, 14, 3) per-part regressions
    canon: torch.Tensor  # (B, N, 3) blended by the part probabilities

    @property
    def parts(self) -> torch.Tensor:
        return self.logits.argmax(-1)


SMALL_SET = 1024  # up to this many points, neighbours come from a batched torch.cdist


def normalise_points(points: torch.Tensor) -> torch.Tensor:
    """(B,N,3) -> centred at the bounding-box centre, divided by the 95th-percentile radius / 0.9."""
    lo, hi = points.min(1, keepdim=True).values, points.max(1, keepdim=True).values
    x = points - (lo + hi) / 2
    r = torch.quantile(x.norm(dim=-1)[:, :: max(1, x.shape[1] // 2048)], 0.95, dim=1)
    return x / (r[:, None, None] / 0.9).clamp_min(1e-8)


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B,N,k) indices of each point's k nearest neighbours (itself included); KD-tree on the CPU
    unless the sets are small (the orientation search's many small subsets: one batched cdist)."""
    if x.is_cuda or x.shape[1] <= SMALL_SET:
        return torch.cdist(x, x).topk(k, dim=-1, largest=False).indices
    from scipy.spatial import cKDTree

    xs = x.detach().numpy()
    idx = [cKDTree(xb).query(xb, k=k, workers=kd_workers())[1] for xb in xs]  # one tree per scan of the batch
    return torch.as_tensor(np.stack(idx), dtype=torch.long)


def nearest(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,N,1) index of each point of x (B,N,3) in y (B,M,3)."""
    if x.is_cuda or x.shape[1] * y.shape[1] <= SMALL_SET**2:
        return torch.cdist(x, y).argmin(-1, keepdim=True)
    from scipy.spatial import cKDTree

    xs, ys = x.detach().numpy(), y.detach().numpy()
    idx = [cKDTree(yb).query(xb, k=1, workers=kd_workers())[1] for xb, yb in zip(xs, ys, strict=True)]
    return torch.as_tensor(np.stack(idx), dtype=torch.long)[..., None]


def gather(f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """f (B,N,C), idx (B,M,k) -> (B,M,k,C); row indexing of the flattened batch (faster than
    torch.gather with an expanded index on the CPU)."""
    B, M, k = idx.shape
    flat = (idx + torch.arange(B, device=idx.device)[:, None, None] * f.shape[1]).reshape(-1)
    return f.reshape(-1, f.shape[-1])[flat].reshape(B, M, k, f.shape[-1])


def _slots(idx: torch.Tensor, n: int) -> torch.Tensor:
    """idx (B,M,k) of points in clouds of n points -> (k, B*M) rows of the flattened batch, one per slot."""
    B, M, k = idx.shape
    return (idx + torch.arange(B, device=idx.device)[:, None, None] * n).reshape(-1, k).T.contiguous()


def _running_max(rows: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """(B*M,C) the max of rows over the k slots (k,B*M): one (B*M,C) row gather per slot, never the
    (B*M,k,C) tensor."""
    out = rows.index_select(0, slots[0])
    for j in range(1, len(slots)):  # k (16) slots, each vectorised over all points and channels
        torch.maximum(out, rows.index_select(0, slots[j]), out=out)
    return out


class _NeighbourMax(torch.autograd.Function):
    """`neighbour_max` with a gradient: a second pass over the slots finds, per point and channel, the row
    that won (3x faster than tracking it in the first pass); the backward adds the gradient to that row
    (one scatter). Autograd through the gathered (B,M,k,C) max (an accumulating index_put over the edges
    plus amax's backward) was two thirds of a training step on the CPU."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        rows, slots = f.reshape(-1, f.shape[-1]), _slots(idx, f.shape[1])
        out = _running_max(rows, slots)
        kind = torch.uint8 if len(slots) <= 256 else torch.long
        slot = torch.zeros(out.shape, dtype=kind, device=f.device)  # the first slot that wins
        for j in range(len(slots) - 1, 0, -1):
            slot.masked_fill_(rows.index_select(0, slots[j]) == out, j)
        ctx.save_for_backward(slots.T.gather(1, slot.long()))  # (B*M,C) the winning rows
        ctx.shape = f.shape
        return out.reshape(*idx.shape[:2], f.shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (won,) = ctx.saved_tensors
        B, N, C = ctx.shape
        g = torch.zeros(B * N, C, dtype=grad.dtype, device=grad.device)
        return g.scatter_add_(0, won, grad.reshape(-1, C)).reshape(B, N, C), None


def neighbour_max(f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """f (B,N,C), idx (B,M,k) -> (B,M,C): the channel-wise max over each point's k neighbours by a running
    max over the neighbour slots: 2 ms against 28 ms for the gathered max of 4096 points x 16 x 128 channels
    on this 2-core CPU. With gradients, `_NeighbourMax` (a training step 1.36 -> 0.58 s, batch 8 x 2304)."""
    if torch.is_grad_enabled() and f.requires_grad:
        return _NeighbourMax.apply(f, idx)
    out = _running_max(f.reshape(-1, f.shape[-1]), _slots(idx, f.shape[1]))
    return out.reshape(*idx.shape[:2], f.shape[-1])


class EdgeConv(nn.Module):
    """EdgeConv with one linear edge map, computed on points: max_j relu(W_s f_i + W_n (f_j - f_i) + b)
    = relu((W_s - W_n) f_i + b + max_j W_n f_j) (the max is channel-wise), then a pointwise layer."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.self_ = nn.Linear(c_in, c_out)
        self.nb = nn.Linear(c_in, c_out, bias=False)
        self.norm = nn.LayerNorm(c_out)
        self.point = nn.Linear(c_out, c_out)

    def forward(self, f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        nb = self.nb(f)
        h = F.relu(self.self_(f) - nb + neighbour_max(nb, idx))
        h = self.norm(h)
        return h + F.relu(self.point(h))


class Encoder(nn.Module):
    """EdgeConvs on the kNN graph plus long-range EdgeConvs on nested subsets: per-point features."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        layers, c = [], 3
        for w in cfg.widths:
            layers.append(EdgeConv(c, w))
            c = w
        self.convs = nn.ModuleList(layers)
        local = sum(cfg.widths)
        dims = ([local] + [cfg.coarse_dim] * len(cfg.coarse))[: len(cfg.coarse)]
        self.coarse = nn.ModuleList(EdgeConv(d, cfg.coarse_dim) for d in dims)
        self.dim = local + cfg.coarse_dim * len(cfg.coarse)

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B,N,3) -> normalised points (B,N,3) and per-point features (B,N,dim)."""
        x = normalise_points(points)
        idx = knn(x, self.cfg.k)
        feats, f = [], x
        for conv in self.convs:
            f = conv(f, idx)
            feats.append(f)
        local = torch.cat(feats, -1)
        return x, torch.cat([local, *self._coarse_context(x, local)], -1)

    def _coarse_context(self, x: torch.Tensor, f: torch.Tensor) -> list[torch.Tensor]:
        """Long-range features: EdgeConvs on nested subsets (the first N/s points; the input order is random);
        every point takes the features of its nearest subset point."""
        out, N = [], x.shape[1]
        xs, fs = x, f
        for stride, conv in zip(self.cfg.coarse, self.coarse, strict=True):
            m = max(N // stride, min(N, self.cfg.k))
            xs = xs[:, :m]
            fs = conv(fs[:, :m], knn(xs, min(self.cfg.k, m)))
            out.append(gather(fs, nearest(x, xs))[:, :, 0])
        return out


class CorrNet(nn.Module):
    """Part logits and canonical points of points given in the body's canonical orientation (y up, facing
    +z; any position and scale): the orientation stage (`loopreg.net.orient`) rotates scans there first."""

    def __init__(self, cfg: NetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or NetConfig()
        self.encoder = Encoder(cfg)
        ctx = self.encoder.dim
        self.glob = nn.Sequential(nn.Linear(ctx, cfg.global_dim), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(ctx + cfg.global_dim + 3, cfg.head_dim), nn.ReLU(),
            nn.Linear(cfg.head_dim, cfg.head_dim // 2), nn.ReLU(),
        )  # fmt: skip
        self.parts = nn.Linear(cfg.head_dim // 2, NUM_PARTS)
        self.regress = nn.Linear(cfg.head_dim // 2, NUM_PARTS * 3)
        self.orientation = nn.Sequential(nn.Linear(cfg.global_dim, 128), nn.ReLU(), nn.Linear(128, 1))

    def score(self, points: torch.Tensor) -> torch.Tensor:
        """(B,) logit that points (B,N,3) are canonically oriented (y up, facing +z); see orient.py."""
        _, local = self.encoder(points)
        return self.orientation(self.glob(local).amax(1))[:, 0]

    def forward(self, points: torch.Tensor) -> NetOutput:
        """points (B,N,3), canonically oriented (normalised here) -> per-point outputs."""
        x, local = self.encoder(points)
        g = self.glob(local).amax(1, keepdim=True)
        h = self.head[1:](self._head_in(local, g, x))
        logits = self.parts(h)
        part_canon = self.regress(h).unflatten(-1, (NUM_PARTS, 3))
        canon = (logits.softmax(-1)[..., None] * part_canon).sum(-2)
        return NetOutput(logits, part_canon, canon)

    def _head_in(self, local: torch.Tensor, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The head's first linear map of cat([local, g, x]) without building the concatenation: its
        weight split by input block; the global feature g (B,1,C), the same for every point, is mapped
        once per cloud (the cat cost a fifth of the forward)."""
        lin, c = self.head[0], local.shape[-1]
        w = lin.weight
        per_cloud = F.linear(g, w[:, c : c + g.shape[-1]], lin.bias)  # (B,1,H)
        return torch.baddbmm(per_cloud, local, w[:, :c].T.expand(local.shape[0], -1, -1)) + F.linear(
            x, w[:, c + g.shape[-1] :]
        )

    def predict(
        self, points: np.ndarray | torch.Tensor, seed: int = 0, passes: int | None = None
    ) -> Prediction:
        """One scan (N,3) in any orientation, position and scale: orientation search, then dense labels
        (`passes` subsets; default `correspond.PASSES`)."""
        from loopreg.net.correspond import PASSES, predict

        return predict(self, np.asarray(points), seed, PASSES if passes is None else passes)

    @torch.no_grad()
    def predict_oriented(
        self,
        points: np.ndarray | torch.Tensor,
        seed: int = 0,
        passes: int = 1,
        n_points: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense prediction for one canonically oriented scan (N,3): parts (N,), canonical points (N,3),
        part probabilities (N,14). The encoder sees `n_points` (default `cfg.n_points`) random points;
        each point takes its nearest subsample point's output. `passes` > 1: that many random subsets
        (seeds seed, seed+1, ...) in one batch; probabilities averaged, the canonical point the mean of the
        passes' regressions of the part that wins on the averaged probabilities (not of the blends: a point
        the passes put on different parts, e.g. the left or right arm, must not land between them)."""
        from scipy.spatial import cKDTree

        p = torch.as_tensor(np.asarray(points), dtype=torch.float32).reshape(-1, 3)
        n = min(n_points or self.cfg.n_points, len(p))
        subs = [
            torch.randperm(len(p), generator=torch.Generator().manual_seed(seed + k))[:n]
            for k in range(passes)
        ]
        dev = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = self(torch.stack([p[sub] for sub in subs]).to(dev))
        self.train(was_training)
        probs = out.logits.softmax(-1).cpu().numpy()
        backs = []
        for sub in subs:  # passes (a few): each a vectorised KD-tree query
            if n < len(p):
                backs.append(cKDTree(p[sub].numpy()).query(p.numpy(), workers=kd_workers())[1])
            else:
                backs.append(torch.argsort(sub).numpy())  # undo the permutation
        prob = probs[0][backs[0]]
        for k in range(1, passes):
            prob += probs[k][backs[k]]
        prob /= passes
        parts = prob.argmax(-1)
        if passes == 1:
            return parts, out.canon[0].cpu().numpy()[backs[0]], prob
        heads = out.part_canon.cpu().numpy()  # (passes, n, parts, 3): only each point's winning part
        canon = sum(heads[k][backs[k], parts] for k in range(passes)) / passes
        return parts, canon, prob
