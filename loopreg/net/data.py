"""Training data for the correspondence network: synthetic scans with per-point ground truth.

A sample is one simulated scan, subsampled to `n_points` points and mapped back to the model frame
(metres, y up; the inverse of the scanner's `to_scan`). Per point: the closest point of the posed GT body
surface, its part (the part of that triangle's nearest vertex) and its canonical point (same triangle and
barycentrics on the zero-shape rest template). Rotations/units are re-drawn at training time (augment).

Seeds: training uses seeds < 1000 (the benchmark uses 1000+). Shapes come from a pool of anny betas
(`sample_betas(pool, BETA_SEED)`), poses from `sample_poses(n, POSE_SEED + shard)`, the scanner rng from
`default_rng([SCAN_SEED, shard, i])`. Shards are .npz files written in parallel (multiprocessing).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from loopreg.body.field import ClosestTriangle, triangle_barycentrics
from loopreg.data.scanner import SUITES, ScanConfig, similarity_inverse, simulate

BETA_SEED, POSE_SEED, SCAN_SEED = 7, 100, 500  # all < 1000: disjoint from the benchmark's seeds
DEFAULT_MIX = {"minimal": 0.15, "clothed": 0.35, "partial": 0.2, "wild": 0.3}


@dataclass
class DataConfig:
    n_scans: int = 1200
    shard_size: int = 40
    n_points: int = 6000
    beta_pool: int = 2000
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    first_shard: int = 0  # shard index = seed offset: new scans start past an earlier dataset's shards
    poses: dict[str, float] | None = None  # library pose weights (unlisted weigh 1); None: uniform
    distance: tuple[float, float] | None = None  # depth views' camera distance (m); None: each suite's


def label_points(
    points: np.ndarray, body_vertices: np.ndarray, faces: np.ndarray, parts: np.ndarray, template: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GT of model-frame points: part (M,) int64, canonical point (M,3) float32, distance to body (M,)."""
    tri, dist = ClosestTriangle(body_vertices, faces).query(points)
    abc = torch.as_tensor(body_vertices[faces[tri]], dtype=torch.float64)
    w = triangle_barycentrics(torch.as_tensor(points, dtype=torch.float64), abc[:, 0], abc[:, 1], abc[:, 2])
    w = w.numpy()
    vids = faces[tri]
    part = parts[vids[np.arange(len(tri)), w.argmax(1)]]
    canon = np.einsum("mk,mkd->md", w, template[vids])
    return part.astype(np.int64), canon.astype(np.float32), dist


def pose_weights(weights: dict[str, float] | None) -> list[float] | None:
    """One weight per library pose (POSE_NAMES order; unlisted weigh 1), or None for uniform."""
    from loopreg.data.poses import POSE_NAMES

    if not weights:
        return None
    unknown = set(weights) - set(POSE_NAMES)
    if unknown:
        raise ValueError(f"unknown poses {sorted(unknown)}; known: {', '.join(POSE_NAMES)}")
    out = [float(weights.get(name, 1.0)) for name in POSE_NAMES]
    if min(out) < 0 or sum(out) <= 0:
        raise ValueError("pose weights must be >= 0 and not all 0")
    return out


def suite_config(suite: str, distance: tuple[float, float] | None = None) -> ScanConfig:
    """A suite's scanner config, its depth views' camera distance overridden when given."""
    cfg = SUITES[suite]
    if distance is None:
        return cfg
    lo, hi = distance
    if not 0.3 <= lo <= hi <= 20:
        raise ValueError(f"camera distance {lo}-{hi} m: need 0.3 <= lo <= hi <= 20")
    return replace(cfg, distance=(float(lo), float(hi)))


def subsample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points (without replacement when there are enough)."""
    return points[rng.choice(len(points), size=n, replace=len(points) < n)]


def make_shard(shard: int, cfg: DataConfig, betas_pool: np.ndarray, out: Path) -> Path:
    """Simulate `cfg.shard_size` scans and write their labelled points to out/shard_XXXX.npz."""
    from loopreg.body import BodyModel
    from loopreg.data.poses import sample_poses

    torch.set_num_threads(1)
    model = BodyModel.load()
    n = cfg.shard_size
    poses = sample_poses(n, POSE_SEED + shard, weights=pose_weights(cfg.poses))
    gen = np.random.default_rng([BETA_SEED, shard])
    betas = torch.as_tensor(betas_pool[gen.integers(len(betas_pool), size=n)])
    with torch.no_grad():
        verts = model(betas=betas, global_orient=poses.global_orient, body_pose=poses.body_pose).vertices
    faces, parts = model.faces.numpy(), model.parts.numpy()
    template = model.v_template.numpy().astype(np.float64)
    names = list(cfg.mix)
    prob = np.array([cfg.mix[k] for k in names]) / sum(cfg.mix.values())
    configs = {k: suite_config(k, cfg.distance) for k in names}
    P, L, C, S = [], [], [], []
    for i in range(n):  # one scan per iteration; each step is vectorised
        rng = np.random.default_rng([SCAN_SEED, shard, i])
        suite = names[int(rng.choice(len(names), p=prob))]
        v = verts[i].numpy().astype(np.float64)
        scan, to_scan, _ = simulate(v, faces, parts, rng, configs[suite])
        inv = similarity_inverse(np.asarray(to_scan))
        pts = subsample(scan.vertices.astype(np.float64), cfg.n_points, rng) @ inv[:3, :3].T + inv[:3, 3]
        part, canon, _ = label_points(pts, v, faces, parts, template)
        P.append(pts.astype(np.float32))
        L.append(part.astype(np.int8))
        C.append(canon)
        S.append(names.index(suite))
    path = out / f"shard_{shard:04d}.npz"
    tmp = out / f"shard_{shard:04d}.tmp.npz"
    np.savez(tmp, points=np.stack(P), parts=np.stack(L), canon=np.stack(C), suite=np.array(S, np.int8),
             betas=betas.numpy(), body_pose=poses.body_pose.numpy(),
             global_orient=poses.global_orient.numpy())  # fmt: skip
    tmp.replace(path)
    return path


def _worker(args: tuple) -> str:
    return str(make_shard(*args))


def generate_dataset(out: Path, cfg: DataConfig, workers: int = 2, log=print) -> Path:
    """Write all shards of the dataset (skipping those already there); resumable."""
    pose_weights(cfg.poses)  # bad weights fail here, before anything is written, not in the workers
    suite_config("partial", cfg.distance)  # likewise a bad camera distance
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({**asdict(cfg), "seeds": {
        "beta": BETA_SEED, "pose": POSE_SEED, "scan": SCAN_SEED}}, indent=1))  # fmt: skip
    from loopreg.data.shapes import sample_betas

    pool_path = out / "betas_pool.npy"
    if not pool_path.exists():
        np.save(pool_path, sample_betas(cfg.beta_pool, BETA_SEED))
    pool = np.load(pool_path)
    n_shards = -(-cfg.n_scans // cfg.shard_size)
    if cfg.first_shard + n_shards + POSE_SEED > 1000:
        raise ValueError("training seeds must stay < 1000 (the benchmark's): lower --first-shard or --n")
    shards = range(cfg.first_shard, cfg.first_shard + n_shards)
    todo = [s for s in shards if not (out / f"shard_{s:04d}.npz").exists()]
    t0 = time.perf_counter()
    jobs = [(s, cfg, pool, out) for s in todo]
    if workers <= 1:
        results = map(_worker, jobs)
    else:
        pool_ = get_context("spawn").Pool(workers)
        results = pool_.imap_unordered(_worker, jobs)
    for k, path in enumerate(results):
        dt = time.perf_counter() - t0
        log(f"{path}: {k + 1}/{len(todo)} shards, {(k + 1) * cfg.shard_size / dt:.2f} scans/s")
    return out


def pack_shards(src: Path, dst: Path, n_points: int = 4096, every: int = 1, offset: int = 0) -> Path:
    """A compact copy of a dataset (float16, fewer points per scan), e.g. to carry to another machine.
    every/offset keep the shards [offset::every] (in name order): a subset to mix into another pack."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(src).glob("shard_*.npz"))[offset::every]:
        with np.load(f) as z:
            np.savez(dst / f.name, points=z["points"][:, :n_points].astype(np.float16),
                     canon=z["canon"][:, :n_points].astype(np.float16), parts=z["parts"][:, :n_points],
                     suite=z["suite"], global_orient=z["global_orient"])  # fmt: skip
    return dst


class ShardDataset:
    """All shards in memory, as float32 (shards may store float16)."""

    def __init__(self, root: Path | list[Path], max_scans: int | None = None):
        files = sorted(Path(root).glob("shard_*.npz")) if isinstance(root, str | Path) else list(root)
        if not files:
            raise FileNotFoundError(f"no shard_*.npz under {root}: run `loopreg train data` first")
        keys = ("points", "parts", "canon", "suite", "global_orient")
        arrays: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for f in files:
            with np.load(f) as z:
                for k in arrays:
                    arrays[k].append(z[k])
        cat = {k: np.concatenate(v)[:max_scans] for k, v in arrays.items()}
        self.points = torch.as_tensor(cat["points"].astype(np.float32))
        self.parts = torch.as_tensor(cat["parts"].astype(np.int64))
        self.canon = torch.as_tensor(cat["canon"].astype(np.float32))
        self.suite = torch.as_tensor(cat["suite"].astype(np.int64))
        self.root = root_rotations(cat["global_orient"])  # (S,3,3) body root orientation (model frame)

    def __len__(self) -> int:
        return len(self.points)


def root_rotations(global_orient: np.ndarray) -> torch.Tensor:
    """(S,3) axis-angle -> (S,3,3) float32 rotation matrices."""
    from scipy.spatial.transform import Rotation

    return torch.as_tensor(Rotation.from_rotvec(np.asarray(global_orient, np.float64)).as_matrix()).float()


def axis_angle_rotations(n: int, gen: torch.Generator, max_deg: float) -> torch.Tensor:
    """(n,3,3) rotations about uniform random axes by angles uniform in [0, max_deg]."""
    from smplx.lbs import batch_rodrigues

    axis = torch.randn(n, 3, generator=gen)
    axis = axis / axis.norm(dim=1, keepdim=True)
    angle = torch.rand(n, 1, generator=gen) * torch.pi * max_deg / 180
    return batch_rodrigues(axis * angle)


def random_rotations(n: int, gen: torch.Generator, p_any: float = 0.5) -> torch.Tensor:
    """(n,3,3): uniform on SO(3) with probability p_any, else a yaw about y with y- or z-up."""
    q = torch.randn(n, 4, generator=gen)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    R_any = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                         2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                         2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                        1).view(n, 3, 3)  # fmt: skip
    a = torch.rand(n, generator=gen) * 2 * torch.pi
    c, s, o, l = torch.cos(a), torch.sin(a), torch.zeros(n), torch.ones(n)
    R_yaw = torch.stack([c, o, s, o, l, o, -s, o, c], 1).view(n, 3, 3)
    zup = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    R_yaw = torch.where((torch.rand(n, generator=gen) < 0.3)[:, None, None], zup @ R_yaw, R_yaw)
    return torch.where((torch.rand(n, generator=gen) < p_any)[:, None, None], R_any, R_yaw)


def uniform_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,3,3) uniform on SO(3) (normalised Gaussian quaternions)."""
    q = torch.randn(n, 4, generator=gen)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                       1).view(n, 3, 3)  # fmt: skip


def yaw_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,3,3) rotations about y by uniform angles."""
    a = torch.rand(n, generator=gen) * 2 * torch.pi
    c, s, o, l = torch.cos(a), torch.sin(a), torch.zeros(n), torch.ones(n)
    return torch.stack([c, o, s, o, l, o, -s, o, c], 1).view(n, 3, 3)


def geodesic_deg(R: torch.Tensor) -> torch.Tensor:
    """(n,) rotation angle of each (n,3,3) rotation, degrees."""
    c = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(c))


def wrong_orientations(
    n: int, gen: torch.Generator, tilt_deg: float = 25.0, min_deg: float = 45.0
) -> torch.Tensor:
    """(n,3,3) rotations at least `min_deg` from the identity, like the orientation search's wrong
    hypotheses: a yaw (the hardest: facing back or sideways), tilted, upside down with p=0.3, or any."""
    flip = torch.where((torch.rand(n, generator=gen) < 0.3)[:, None, None],
                       torch.diag(torch.tensor([1.0, -1.0, -1.0])), torch.eye(3))  # fmt: skip
    R = axis_angle_rotations(n, gen, tilt_deg) @ flip @ yaw_rotations(n, gen)
    R = torch.where((torch.rand(n, generator=gen) < 0.25)[:, None, None], uniform_rotations(n, gen), R)
    bad = geodesic_deg(R) < min_deg
    if bad.any():  # redraw the few that landed near the identity
        R[bad] = wrong_orientations(int(bad.sum()), gen, tilt_deg, min_deg)
    return R


def _pick_points(ds: ShardDataset, idx: torch.Tensor, n_points: int, gen: torch.Generator):
    pick = torch.argsort(torch.rand(len(idx), ds.points.shape[1], generator=gen), 1)[:, :n_points]
    pts = torch.gather(ds.points[idx], 1, pick[..., None].expand(-1, -1, 3))
    return pick, pts @ ds.root[idx]  # canonical orientation: root^T p


def batch(
    ds: ShardDataset, idx: torch.Tensor, n_points: int, gen: torch.Generator, jitter_deg: float = 25.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CorrNet batch: random point subsets turned to the body's canonical orientation (root frame), then a
    random rotation of up to `jitter_deg` (what the orientation stage leaves), scale and translation."""
    pick, pts = _pick_points(ds, idx, n_points, gen)
    pts = turn_scale_shift(pts, axis_angle_rotations(len(idx), gen, jitter_deg), gen)
    parts = torch.gather(ds.parts[idx], 1, pick)
    canon = torch.gather(ds.canon[idx], 1, pick[..., None].expand(-1, -1, 3))
    return pts, parts, canon


def score_batch(
    ds: ShardDataset, idx: torch.Tensor, n_points: int, gen: torch.Generator, jitter_deg: float = 25.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Orientation-score batch: small point subsets (B,n,3), half canonically oriented (within
    `jitter_deg`, label 1), half in a wrong orientation (label 0)."""
    _, pts = _pick_points(ds, idx, n_points, gen)
    B = len(idx)
    label = (torch.arange(B) % 2 == 0).float()
    R = torch.where(label[:, None, None] > 0, axis_angle_rotations(B, gen, jitter_deg),
                    wrong_orientations(B, gen))  # fmt: skip
    return turn_scale_shift(pts, R, gen), label


def turn_scale_shift(pts: torch.Tensor, R: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Training augmentation of point sets (B,N,3): rotate by R (B,3,3), scale by exp(U(-0.3, 0.3)) (units
    and body size) and shift by N(0, 1) m (the network normalises both away)."""
    B = len(pts)
    scale = torch.exp(torch.empty(B, 1, 1).uniform_(-0.3, 0.3, generator=gen)).to(pts)
    return scale * pts @ R.transpose(1, 2) + torch.randn(B, 1, 3, generator=gen).to(pts)
