"""LoopReg's diffused body field: the body model's function spread to every point of canonical space.

A canonical point x takes the skinning weights, shape and pose blend shapes of its closest point on the
rest-pose mesh (barycentric interpolation in the closest triangle). Every lookup is a sparse linear map
from the model's vertices to the query points: vertex ids (..., K) and coefficients (..., K).

- exact mode: the closest triangle, found on the CPU with a KD-tree over points covering the triangles
  (candidates verified by a distance bound); K=3 barycentrics, differentiable in x. For evaluation.
- grid mode: a grid with cubic cells around the body stores each node's closest triangle (int32; the
  barycentrics are recomputed when loaded). A query blends its 8 corner nodes trilinearly, K=24,
  differentiable in x through the trilinear weights; runs on the module's device. For training.

Weights, blend shapes and pose correctives are gathered on the fly from the per-vertex arrays, so the
field costs 4 bytes a node on disk instead of a dense grid of the whole function (LoopReg: 64^3, 1.3 GB).
Points off the surface keep their offset from the closest point: posing applies that point's blended
transform to x + S(x) beta + P(x) pose_feature, exactly smplx.lbs at the vertices. Float32, any device.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from smplx.lbs import batch_rigid_transform, batch_rodrigues

from loopreg.body.data import BodyModelData, _savez_deterministic
from loopreg.paths import cache_dir
from loopreg.threads import kd_workers

FIELD_VERSION = 1
_CHUNK = 1 << 21  # point-triangle pairs per projection chunk


@dataclass
class FieldSample:
    """The body function at query points, as an interpolation of the model's vertices."""

    vids: torch.Tensor  # (..., K) vertex ids
    coef: torch.Tensor  # (..., K) coefficients, summing to 1
    closest: torch.Tensor  # (..., 3) closest canonical surface point (grid mode: its trilinear blend)
    weights: torch.Tensor  # (..., J) skinning weights


# --- geometry ------------------------------------------------------------------------------------
def triangle_barycentrics(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Barycentrics (..., 3) of the point of triangle abc closest to p (Ericson's regions, differentiable)."""
    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def safe(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        ok = den.abs() > 1e-30
        return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))

    def bary(u: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.stack(torch.broadcast_tensors(u, v, w), -1)

    one, zero = torch.ones_like(d1), torch.zeros_like(d1)
    v_in, w_in = safe(vb, va + vb + vc), safe(vc, va + vb + vc)
    out = bary(1 - v_in - w_in, v_in, w_in)
    # lowest priority first: each later region overrides the ones before it
    t = safe(d4 - d3, (d4 - d3) + (d5 - d6))
    out = torch.where(((va <= 0) & (d4 >= d3) & (d5 >= d6))[..., None], bary(zero, 1 - t, t), out)
    t = safe(d2, d2 - d6)
    out = torch.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[..., None], bary(1 - t, zero, t), out)
    out = torch.where(((d6 >= 0) & (d5 <= d6))[..., None], bary(zero, zero, one), out)
    t = safe(d1, d1 - d3)
    out = torch.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[..., None], bary(1 - t, t, zero), out)
    out = torch.where(((d3 >= 0) & (d4 <= d3))[..., None], bary(zero, one, zero), out)
    return torch.where(((d1 <= 0) & (d2 <= 0))[..., None], bary(one, zero, zero), out)


def _candidate_distances(p: torch.Tensor, tri: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Squared distances (M, k) from points p (M,3) to candidate triangles tri (M, k); corners (F,3,3)."""
    out = torch.empty(tri.shape, dtype=p.dtype)
    step = max(1, _CHUNK // tri.shape[1])
    for s in range(0, p.shape[0], step):  # chunks of points bound the memory
        abc = corners[tri[s : s + step]]
        q = p[s : s + step, None].to(corners.dtype)
        w = triangle_barycentrics(q, abc[..., 0, :], abc[..., 1, :], abc[..., 2, :])
        out[s : s + step] = (q - (w[..., None] * abc).sum(-2)).square().sum(-1)
    return out


class ClosestTriangle:
    """Exact closest-triangle search on a fixed mesh (CPU, vectorised over points).

    A KD-tree holds sample points covering every triangle to within `radius` (sub-triangle centroids of
    a subdivision of large triangles). Candidates are the triangles of the k nearest samples; a point is
    done once the k-th sample is farther than the best distance + radius, else k grows.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, k: int = 16):
        corners = vertices[faces].astype(np.float64)  # (F,3,3)
        reach = np.linalg.norm(corners - corners.mean(1, keepdims=True), axis=-1).max(1)  # (F,)
        target = max(float(np.median(reach)), float(reach.max()) / 32, 1e-9)
        splits = np.ceil(reach / target).astype(np.int64).clip(1)
        samples, owner = [], []
        for n in np.unique(splits):  # a few subdivision levels, not a loop over triangles
            tri = np.flatnonzero(splits == n)
            bary = _subtriangle_centroids(int(n))  # (n*n, 3)
            samples.append(np.einsum("sk,tkd->tsd", bary, corners[tri]).reshape(-1, 3))
            owner.append(np.repeat(tri, len(bary)))
        self.radius = float((reach / splits).max())
        self.tree = cKDTree(np.concatenate(samples))
        self.owner = np.concatenate(owner)
        self.corners = torch.as_tensor(corners, dtype=torch.float32)  # float32 ranks candidates 3x faster
        self.k = k

    def query(self, points: np.ndarray, rtol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Closest triangle (M,) int64 and distance (M,) for points (M,3).

        rtol > 0 accepts a triangle within (1 + rtol) of the closest distance, which spares far points
        most of the work (near the surface the search stays exact to within rtol * distance). rtol = inf
        takes the best of the first round's candidates (the triangles of the k nearest samples) for every
        point farther than `radius` from its k-th sample: not proven closest, but in practice the same.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        tri = np.zeros(len(points), dtype=np.int64)
        dist = np.zeros(len(points))
        todo, k, ns = np.arange(len(points)), self.k, len(self.owner)
        while len(todo):  # rounds over a shrinking subset, not over points
            k = min(k, ns)
            cd, si = self.tree.query(points[todo], k=k, workers=kd_workers())
            cd, ci = cd.reshape(len(todo), k), self.owner[si.reshape(len(todo), k)]
            d2 = _candidate_distances(torch.as_tensor(points[todo]), torch.as_tensor(ci), self.corners)
            dbest, best = (t.numpy() for t in d2.min(1))
            dbest = np.sqrt(dbest.astype(np.float64))
            # a triangle closer than dbest / (1 + rtol) has a sample within that + radius
            done = (dbest / (1 + rtol) + self.radius <= cd[:, -1]) | (k == ns)
            tri[todo[done]], dist[todo[done]] = ci[done, best[done]], dbest[done]
            todo, k = todo[~done], k * 4
        return tri, dist


def _subtriangle_centroids(n: int) -> np.ndarray:
    """Barycentrics of the centroids of the n*n triangles of an n-fold subdivided triangle."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    up = np.stack([i, j], -1)[i + j <= n - 1] + 1 / 3
    down = np.stack([i, j], -1)[i + j <= n - 2] + 2 / 3
    uv = np.concatenate([up, down]) / n
    return np.concatenate([1 - uv.sum(1, keepdims=True), uv], 1)


# --- the field -----------------------------------------------------------------------------------
def field_key(data: BodyModelData, settings: dict[str, float]) -> str:
    """Cache key: the rest mesh (the grid depends on nothing else), the grid settings and format version."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(data.v_template, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(data.faces, dtype=np.int64).tobytes())
    h.update(";".join(f"{k}={float(settings[k]):.6g}" for k in sorted(settings)).encode())
    h.update(f";v={FIELD_VERSION}".encode())
    return h.hexdigest()


def grid_layout(vertices: np.ndarray, res: int, margin: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Origin (3,), cubic cell size and node counts (3,): `res` nodes along the longest side of box+margin."""
    lo, hi = vertices.min(0) - margin, vertices.max(0) + margin
    spacing = float((hi - lo).max()) / (res - 1)
    dims = np.maximum(np.ceil((hi - lo) / spacing - 1e-6).astype(np.int64) + 1, 2)
    origin = (lo + hi) / 2 - (dims - 1) * spacing / 2
    return origin, spacing, dims


def _node_positions(origin: np.ndarray, spacing: float, dims) -> np.ndarray:
    axes = [origin[i] + spacing * np.arange(dims[i]) for i in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


class BodyField(torch.nn.Module):
    """The diffused body function of one body model; `pose` poses canonical points like smplx poses vertices.

    node_tri (Nx, Ny, Nz): each grid node's closest triangle; node (i, j, k) is at origin + spacing*(i, j, k).
    """

    def __init__(
        self, data: BodyModelData, node_tri: np.ndarray, origin: np.ndarray, spacing: float, settings: dict
    ):
        super().__init__()
        self.data, self.spacing, self.settings = data, float(spacing), dict(settings)
        self.key = field_key(data, self.settings)
        self.dims = tuple(int(d) for d in node_tri.shape)
        self.origin64 = np.asarray(origin, dtype=np.float64)
        V, P = data.num_vertices, data.posedirs.shape[2]
        f32 = dict(dtype=torch.float32)
        self.register_buffer("v_template", torch.as_tensor(data.v_template, **f32))
        self.register_buffer("faces", torch.as_tensor(data.faces, dtype=torch.long))
        self.register_buffer("lbs_weights", torch.as_tensor(data.weights, **f32))
        self.register_buffer("shapedirs", torch.as_tensor(data.shapedirs, **f32))
        self.register_buffer("posedirs", torch.as_tensor(data.posedirs.reshape(V * 3, P).T.copy(), **f32))
        self.register_buffer("J_regressor", torch.as_tensor(data.J_regressor, **f32))
        self.register_buffer("parents", torch.as_tensor(data.parents, dtype=torch.long))
        self.register_buffer("origin", torch.as_tensor(np.asarray(origin), **f32))
        # per node: the triangle's vertex ids and the barycentrics of the node's closest point in it
        vids = data.faces[node_tri.reshape(-1)]
        abc = torch.as_tensor(data.v_template[vids], dtype=torch.float64)
        nodes = torch.as_tensor(_node_positions(self.origin64, spacing, self.dims))
        bary = triangle_barycentrics(nodes, abc[:, 0], abc[:, 1], abc[:, 2])
        self.register_buffer("node_tri", torch.as_tensor(node_tri.reshape(-1).astype(np.int32)))
        self.register_buffer("node_vids", torch.as_tensor(vids.astype(np.int32)))
        self.register_buffer("node_bary", bary.float())
        corner = [[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)]
        self.register_buffer("_corners", torch.tensor(corner), persistent=False)  # (8,3) cell corner offsets
        self.register_buffer("_dims", torch.tensor(self.dims), persistent=False)
        self._search: ClosestTriangle | None = None

    # construction and cache ----------------------------------------------------------------------
    @classmethod
    def build(cls, data: BodyModelData, res: int = 64, margin: float = 0.15, rtol: float = 0.05) -> BodyField:
        """Grid of `res` nodes along the longest side of the rest body's box + margin (m), cubic cells.

        Each node takes a triangle within (1 + rtol) of its closest distance (exact search: rtol=0).
        """
        origin, spacing, dims = grid_layout(data.v_template.astype(np.float64), res, margin)
        search = ClosestTriangle(data.v_template, data.faces)
        tri, _ = search.query(_node_positions(origin, spacing, dims), rtol=rtol)
        field = cls(data, tri.reshape(dims), origin, spacing, {"res": res, "margin": margin, "rtol": rtol})
        field._search = search
        return field

    @classmethod
    def for_model(
        cls, data: BodyModelData, res: int = 64, margin: float = 0.15, rtol: float = 0.05
    ) -> BodyField:
        """The field of a model, built once and cached (project cache), keyed by the mesh and settings."""
        path = (
            cache_dir("field") / f"{field_key(data, {'res': res, 'margin': margin, 'rtol': rtol})[:32]}.npz"
        )
        if path.exists():
            try:
                return cls.load(path, data)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # unreadable or stale: rebuilt and overwritten below
        field = cls.build(data, res, margin, rtol)
        field.save(path)
        return field

    def save(self, path: str | Path) -> Path:
        """Compressed .npz: node triangle ids (int32, 4 bytes a node) and the grid's placement."""
        arrays = {
            "node_tri": self.node_tri.cpu().numpy().reshape(self.dims),
            "origin": self.origin64,
            "spacing": np.array(self.spacing),
            "settings": np.array(json.dumps(self.settings, sort_keys=True)),
            "key": np.array(self.key),
            "version": np.array(FIELD_VERSION),
        }
        buf = io.BytesIO()
        _savez_deterministic(buf, arrays)
        path = Path(path)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)  # atomic: a parallel reader never sees half a file
        return path

    @classmethod
    def load(cls, path: str | Path, data: BodyModelData) -> BodyField:
        with np.load(path, allow_pickle=False) as npz:
            if _scalar(npz["version"]) != FIELD_VERSION:
                raise ValueError(f"{path}: field format {_scalar(npz['version'])}, expected {FIELD_VERSION}")
            tri, origin, spacing = npz["node_tri"], npz["origin"], float(_scalar(npz["spacing"]))
            settings, key = json.loads(_scalar(npz["settings"])), str(_scalar(npz["key"]))
        if key != field_key(data, settings):
            raise ValueError(f"{path} was built for another body model")
        return cls(data, tri, origin, spacing, settings)

    def nbytes(self) -> dict[str, int]:
        """RAM of the grid buffers and of the model arrays the field gathers from."""
        grid = ("node_tri", "node_vids", "node_bary", "origin", "_corners", "_dims")
        sizes = {n: b.numel() * b.element_size() for n, b in self.named_buffers()}
        return {
            "grid": sum(sizes[n] for n in grid),
            "model": sum(v for n, v in sizes.items() if n not in grid),
        }

    # lookup ------------------------------------------------------------------------------------------
    def lookup(self, points: torch.Tensor, exact: bool = False) -> FieldSample:
        """The body function at canonical points (..., 3); differentiable w.r.t. the points."""
        vids, coef = self._exact(points) if exact else self._trilinear(points)
        return FieldSample(
            vids, coef, self.interp(vids, coef, self.v_template), self.interp(vids, coef, self.lbs_weights)
        )

    def _trilinear(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dims, offs = self._dims, self._corners
        g = ((points - self.origin) / self.spacing).clamp(min=torch.zeros_like(dims), max=dims - 1)
        i0 = g.detach().floor().clamp(max=dims - 2).long()
        t = g - i0  # (..., 3), in [0, 1]; clamped outside the grid (zero gradient there)
        idx = i0[..., None, :] + offs  # (..., 8, 3)
        flat = (idx[..., 0] * self.dims[1] + idx[..., 1]) * self.dims[2] + idx[..., 2]
        tw = torch.where(offs.bool(), t[..., None, :], 1 - t[..., None, :]).prod(-1)  # (..., 8)
        vids = self.node_vids[flat].long()  # (..., 8, 3)
        coef = tw[..., None] * self.node_bary[flat]
        return vids.flatten(-2), coef.flatten(-2)

    def _exact(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._search is None:
            self._search = ClosestTriangle(self.data.v_template, self.data.faces)
        tri, _ = self._search.query(points.detach().reshape(-1, 3).cpu().double().numpy())
        vids = self.faces[torch.as_tensor(tri, device=points.device)].reshape(*points.shape[:-1], 3)
        abc = self.v_template[vids]
        return vids, triangle_barycentrics(points, abc[..., 0, :], abc[..., 1, :], abc[..., 2, :])

    @staticmethod
    def interp(vids: torch.Tensor, coef: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Interpolate a per-vertex array (V, ...) at the sample: (..., *values.shape[1:])."""
        c = coef.reshape(*coef.shape, *([1] * (values.dim() - 1)))
        return (values[vids] * c).sum(coef.dim() - 1)

    def shapedirs_at(self, sample: FieldSample) -> torch.Tensor:
        """Shape blend shapes S(x): (..., 3, B)."""
        return self.interp(sample.vids, sample.coef, self.shapedirs)

    def posedirs_at(self, sample: FieldSample) -> torch.Tensor:
        """Pose blend shapes P(x): (..., 3, P), the model's (V, 3, P) layout. Large: use for few points."""
        V = self.v_template.shape[0]
        return self.interp(sample.vids, sample.coef, self.posedirs.T.reshape(V, 3, -1))

    # posing --------------------------------------------------------------------------------------------
    def pose(
        self,
        points: torch.Tensor,
        betas: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        exact: bool = False,
    ) -> torch.Tensor:
        """Pose canonical points (N,3) or (B,N,3) -> (B,N,3), differentiable w.r.t. points and parameters."""
        return self.pose_sample(points, self.lookup(points, exact), betas, global_orient, body_pose, transl)

    def pose_sample(
        self,
        points: torch.Tensor,
        sample: FieldSample,
        betas: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`pose` with a lookup done before (reuse one lookup for several parameter sets)."""
        B = _batch_size(points, betas, global_orient, body_pose, transl)
        offsets, A = self._blend_and_transforms(B, betas, global_orient, body_pose)
        V = self.v_template.shape[0]
        vids, coef = sample.vids, sample.coef
        if vids.dim() == 2:  # points shared by the batch
            vids, coef, points = vids.expand(B, -1, -1), coef.expand(B, -1, -1), points.expand(B, -1, -1)
        flat = vids + V * torch.arange(B, device=vids.device)[:, None, None]
        x = points + self.interp(flat, coef, offsets.reshape(B * V, 3))  # canonical + shape + pose blends
        W = sample.weights.expand(B, *sample.weights.shape[-2:])
        T = torch.matmul(W, A.reshape(B, -1, 16)).reshape(B, -1, 4, 4)
        posed = (T[..., :3, :3] @ x[..., None])[..., 0] + T[..., :3, 3]
        return posed if transl is None else posed + transl[:, None]

    def _blend_and_transforms(
        self, B: int, betas, global_orient, body_pose
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-vertex blend offsets (B,V,3) and joint transforms (B,J,4,4), as in smplx.lbs."""
        ref, J = self.v_template, self.parents.shape[0]
        zeros = ref.new_zeros
        betas = zeros(B, 0) if betas is None else betas.expand(B, -1)
        go = zeros(B, 3) if global_orient is None else global_orient.reshape(-1, 3).expand(B, 3)
        bp = zeros(B, 3 * (J - 1)) if body_pose is None else body_pose.reshape(-1, 3 * (J - 1)).expand(B, -1)
        shape_off = torch.einsum("bl,mkl->bmk", betas, self.shapedirs[..., : betas.shape[1]])
        v_shaped = ref + shape_off
        joints = torch.einsum("bik,ji->bjk", v_shaped, self.J_regressor)
        rot = batch_rodrigues(torch.cat([go, bp], 1).reshape(-1, 3)).reshape(B, J, 3, 3)
        pose_feature = (rot[:, 1:] - torch.eye(3, dtype=ref.dtype, device=ref.device)).reshape(B, -1)
        pose_off = torch.matmul(pose_feature, self.posedirs).reshape(B, -1, 3)
        _, A = batch_rigid_transform(rot, joints, self.parents, dtype=ref.dtype)
        return shape_off + pose_off, A


def _scalar(a: np.ndarray):
    return a.reshape(-1)[0].item()


def _batch_size(points: torch.Tensor, *params: torch.Tensor | None) -> int:
    sizes = {p.shape[0] for p in params if p is not None and p.dim() > 1}
    if points.dim() == 3:
        sizes.add(points.shape[0])
    sizes.discard(1)
    if len(sizes) > 1:
        raise ValueError(f"inconsistent batch sizes {sorted(sizes)}")
    return sizes.pop() if sizes else 1
