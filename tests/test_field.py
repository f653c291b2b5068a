"""The diffused body field: posing canonical points agrees with smplx at the vertices, carries offsets,
has gradients, grid and exact modes agree off the medial axis, and the cache round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from loopreg.body.data import SMPL_PARENTS, BodyModelData
from loopreg.body.field import BodyField, ClosestTriangle, triangle_barycentrics
from loopreg.body.model import BodyModel

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "model_store" / "loopreg_default.npz"

# rough T-pose joint positions (m) in SMPL's joint order
TOY_JOINTS = np.array([
    [0, 0, 0], [0.09, -0.08, 0], [-0.09, -0.08, 0], [0, 0.1, 0], [0.1, -0.45, 0], [-0.1, -0.45, 0],
    [0, 0.22, 0], [0.1, -0.85, 0], [-0.1, -0.85, 0], [0, 0.3, 0], [0.1, -0.9, 0.12], [-0.1, -0.9, 0.12],
    [0, 0.48, 0], [0.08, 0.4, 0], [-0.08, 0.4, 0], [0, 0.6, 0], [0.18, 0.43, 0], [-0.18, 0.43, 0],
    [0.44, 0.43, 0], [-0.44, 0.43, 0], [0.68, 0.43, 0], [-0.68, 0.43, 0], [0.76, 0.43, 0], [-0.76, 0.43, 0],
])  # fmt: skip
# capsules (joint, joint, radius) making the toy body
TOY_LIMBS = [(0, 12, 0.13), (1, 7, 0.065), (2, 8, 0.065), (7, 10, 0.04), (8, 11, 0.04), (12, 15, 0.09),
             (13, 22, 0.045), (14, 23, 0.045)]  # fmt: skip


def tube(length: float, radius: float, step: float = 0.04, sections: int = 12) -> trimesh.Trimesh:
    """A closed capsule along +z from 0 to length, with rings every ~step (no long thin triangles)."""
    ang = np.linspace(-np.pi / 2, 0, 4)
    n = max(1, int(np.ceil(length / step)))
    profile = np.concatenate([
        np.stack([radius * np.cos(ang), radius * np.sin(ang)], 1),
        np.stack([np.full(n - 1, radius), np.linspace(0, length, n + 1)[1:-1]], 1),
        np.stack([radius * np.cos(ang[::-1]), length - radius * np.sin(ang[::-1])], 1),
    ])  # fmt: skip
    profile[[0, -1], 0] = 0
    return trimesh.creation.revolve(profile, sections=sections)


def toy_body(seed: int = 0) -> BodyModelData:
    """A capsule 'body' in SMPL's format: 24 joints, smooth weights, random smooth blend shapes."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, j, r in TOY_LIMBS:
        a, b = TOY_JOINTS[i], TOY_JOINTS[j]
        cap = tube(float(np.linalg.norm(b - a)), r)
        cap.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], b - a))
        cap.apply_translation(a)
        parts.append(cap)
    mesh = trimesh.util.concatenate(parts)
    v = mesh.vertices.astype(np.float32)
    V = len(v)
    d2 = ((v[:, None] - TOY_JOINTS[None]) ** 2).sum(-1)
    weights = np.exp(-d2 / 0.01 + d2.min(1, keepdims=True) / 0.01)
    weights /= weights.sum(1, keepdims=True)
    near = np.argsort(d2, 0)[:6]  # (6, 24): each joint regressed from its 6 nearest vertices
    J_reg = np.zeros((24, V), np.float32)
    J_reg[np.arange(24)[None], near] = 1 / 6
    feats = np.concatenate([np.ones((V, 1)), v, np.sin(4 * v)], 1)  # smooth functions of position
    shapedirs = 0.01 * np.einsum("vf,fkb->vkb", feats, rng.normal(size=(7, 3, 10)))
    posedirs = 0.003 * np.einsum("vf,fkp->vkp", feats, rng.normal(size=(7, 3, 207)))
    return BodyModelData(
        v_template=v, faces=mesh.faces.astype(np.int64), weights=weights.astype(np.float32),
        shapedirs=shapedirs.astype(np.float32), posedirs=posedirs.astype(np.float32), J_regressor=J_reg,
        parents=np.array(SMPL_PARENTS), meta={"name": "toy"},
    ).validate()  # fmt: skip


def smplx_pose(data: BodyModelData, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reference: the project's BodyModel (smplx.SMPL) posing the model's vertices."""
    return BodyModel(data)(**params).vertices


def random_params(data: BodyModelData, B: int, sigma: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "betas": torch.randn(B, data.num_betas, generator=g),
        "global_orient": sigma * torch.randn(B, 3, generator=g),
        "body_pose": sigma * torch.randn(B, 3 * (data.num_joints - 1), generator=g),
        "transl": 0.1 * torch.randn(B, 3, generator=g),
    }


def off_surface(
    data: BodyModelData, dist: float, n: int = 400, seed: int = 0
) -> tuple[torch.Tensor, np.ndarray]:
    """Points `dist` along the normal from random vertices, and those vertices."""
    mesh = trimesh.Trimesh(data.v_template, data.faces, process=False)
    idx = np.random.default_rng(seed).choice(data.num_vertices, n, replace=False)
    pts = data.v_template[idx] + dist * mesh.vertex_normals[idx]
    return torch.as_tensor(pts, dtype=torch.float32), idx


MODELS = ["toy"] + (["default"] if DEFAULT_MODEL.exists() else [])


@pytest.fixture(scope="module", params=MODELS)
def field(request) -> BodyField:
    data = toy_body() if request.param == "toy" else BodyModelData.load(DEFAULT_MODEL)
    res = 48 if request.param == "toy" else 64
    return BodyField.for_model(data, res=res)


def test_barycentrics_match_brute_force():
    g = torch.Generator().manual_seed(1)
    p, a, b, c = (torch.randn(500, 3, generator=g, dtype=torch.float64) for _ in range(4))
    w = triangle_barycentrics(p, a, b, c)
    d = (p - (w[:, :1] * a + w[:, 1:2] * b + w[:, 2:] * c)).norm(dim=-1)
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    u, v = torch.meshgrid(s, s, indexing="ij")
    keep = (u + v) <= 1
    u, v = u[keep], v[keep]
    q = a[:, None] + u[None, :, None] * (b - a)[:, None] + v[None, :, None] * (c - a)[:, None]
    brute = (q - p[:, None]).norm(dim=-1).min(1).values
    assert torch.all(w >= -1e-9) and torch.allclose(w.sum(-1), torch.ones(500, dtype=torch.float64))
    assert torch.all(d <= brute + 1e-12)


def test_vertices_match_smplx(field: BodyField):
    params = random_params(field.data, B=4)
    verts = torch.as_tensor(field.data.v_template)
    posed = field.pose(verts, exact=True, **params)
    ref = smplx_pose(field.data, params)
    assert posed.shape == ref.shape
    assert (posed - ref).norm(dim=-1).max() < 1e-3


def test_exact_closest_point_is_nearest(field: BodyField):
    pts, _ = off_surface(field.data, 0.02)
    s = field.lookup(pts, exact=True)
    mesh = trimesh.Trimesh(field.data.v_template, field.data.faces, process=False)
    d_ref = np.linalg.norm(mesh.vertices[None] - pts.numpy()[:, None], axis=-1).min(1)  # vertex bound
    d = (s.closest - pts).norm(dim=-1).numpy()
    assert np.all(d <= d_ref + 1e-6) and np.all(d <= 0.02 + 1e-5)
    assert torch.allclose(s.weights.sum(-1), torch.ones(len(pts)), atol=1e-5)


def brute_distance(field: BodyField, pts: torch.Tensor) -> torch.Tensor:
    """Distance to the mesh over all triangles (reference)."""
    abc = field.v_template[field.faces]  # (F,3,3)
    q = pts[:, None].double()
    w = triangle_barycentrics(q, *(abc[None, :, i].double() for i in range(3)))
    return (q - (w[..., None] * abc[None].double()).sum(-2)).norm(dim=-1).min(1).values


def test_exact_search_and_grid_nodes_against_brute_force(field: BodyField):
    g = torch.Generator().manual_seed(7)
    pts = field.v_template[torch.randint(len(field.v_template), (100,), generator=g)]
    pts = pts + 0.1 * torch.randn(pts.shape, generator=g)  # up to ~30 cm off the surface
    d = (field.lookup(pts, exact=True).closest - pts).norm(dim=-1).double()
    assert torch.allclose(d, brute_distance(field, pts), atol=1e-6)
    nodes = torch.randint(len(field.node_tri), (100,), generator=g)
    idx = torch.stack(torch.unravel_index(nodes, field.dims), -1)
    pos = field.origin + field.spacing * idx
    node_closest = (field.node_bary[nodes, :, None] * field.v_template[field.node_vids[nodes].long()]).sum(1)
    d_node = (node_closest - pos).norm(dim=-1).double()
    assert torch.all(d_node <= (1 + field.settings["rtol"]) * brute_distance(field, pos) + 1e-6)


def test_relaxed_closest_triangle_searches_against_brute_force(field: BodyField):
    """The export's first-round search (rtol = inf) and rtol = 0.1 against all triangles, on points from
    the surface out to ~60 cm, where the exact search needs the most candidates."""
    g = torch.Generator().manual_seed(11)
    pts = field.v_template[torch.randint(len(field.v_template), (300,), generator=g)]
    pts = pts + torch.rand(300, 1, generator=g) * 0.2 * torch.randn(pts.shape, generator=g)
    ref = brute_distance(field, pts).numpy()
    search = ClosestTriangle(field.data.v_template, field.data.faces)
    for rtol, slack in ((0.1, 1.1), (float("inf"), 1.0)):
        tri, d = search.query(pts.numpy(), rtol)
        assert np.all(d >= ref - 1e-6) and np.all(d <= slack * ref + 1e-4), rtol  # inf: within 0.1 mm
        corners = field.v_template[field.faces[torch.as_tensor(tri)]].double()
        q = pts.double()
        w = triangle_barycentrics(q, corners[:, 0], corners[:, 1], corners[:, 2])
        assert np.allclose((q - (w[:, :, None] * corners).sum(1)).norm(dim=-1).numpy(), d, atol=1e-6)


def test_offsets_are_carried(field: BodyField):
    pts, _ = off_surface(field.data, 0.02)
    params = random_params(field.data, B=3, seed=1)
    s = field.lookup(pts, exact=True)
    posed = field.pose_sample(pts, s, **params)
    posed_closest = field.pose_sample(s.closest, s, **params)
    dist = (posed - posed_closest).norm(dim=-1)
    rest = (pts - s.closest).norm(dim=-1)
    assert (dist - rest).abs().max() < 0.01


def test_grid_gradients(field: BodyField):
    pts, _ = off_surface(field.data, 0.01, n=200)
    pts.requires_grad_(True)
    params = random_params(field.data, B=2, seed=2)
    posed = field.pose(pts, **params)
    (grad,) = torch.autograd.grad(posed.square().sum(), pts)
    assert torch.isfinite(grad).all() and (grad.norm(dim=-1) > 0).all()
    # the blend-function part alone (weights) must depend on x too
    w = field.lookup(pts).weights
    (gw,) = torch.autograd.grad((w * torch.arange(w.shape[-1])).sum(), pts)
    assert gw.norm(dim=-1).gt(0).float().mean() > 0.5


def test_exact_gradients(field: BodyField):
    pts, _ = off_surface(field.data, 0.01, n=50)
    pts = pts.double().float().requires_grad_(True)
    posed = field.pose(pts, exact=True, **random_params(field.data, B=1, seed=3))
    (grad,) = torch.autograd.grad(posed.sum(), pts)
    assert torch.isfinite(grad).all() and (grad.norm(dim=-1) > 0).all()


def test_grid_matches_exact_off_medial_axis(field: BodyField):
    pts, _ = off_surface(field.data, 0.02, n=400)
    grid, exact = field.lookup(pts), field.lookup(pts, exact=True)
    # off the medial axis: all 8 corners' closest points lie near the exact closest point
    corners = field.v_template[grid.vids].reshape(len(pts), 8, 3, 3)
    bary = (
        grid.coef.reshape(len(pts), 8, 3) / grid.coef.reshape(len(pts), 8, 3).sum(-1, keepdim=True)
    ).nan_to_num()
    corner_closest = (bary[..., None] * corners).sum(-2)
    spread = (corner_closest - exact.closest[:, None]).norm(dim=-1).max(1).values
    calm = spread < field.spacing
    assert calm.float().mean() > 0.2
    params = random_params(field.data, B=2, seed=4)
    err = (field.pose_sample(pts, grid, **params) - field.pose_sample(pts, exact, **params)).norm(dim=-1)
    assert err.median() < 0.005 and err[:, calm].max() < 0.02


def test_batched_points_and_broadcast(field: BodyField):
    pts, _ = off_surface(field.data, 0.0, n=30)
    params = random_params(field.data, B=3, seed=5)
    shared = field.pose(pts, **params)
    batched = field.pose(pts.expand(3, -1, -1), **params)
    assert torch.allclose(shared, batched, atol=1e-6)
    one = field.pose(pts, **{k: v[1:2] for k, v in params.items()})
    assert torch.allclose(one[0], shared[1], atol=1e-6)
    rest = field.pose(torch.as_tensor(field.data.v_template), exact=True)
    assert torch.allclose(rest[0], field.v_template, atol=1e-6)
    far = torch.tensor([[5.0, 0, 0], [0, -5.0, 3.0]], requires_grad=True)  # outside the grid: clamped
    (grad,) = torch.autograd.grad(field.pose(far, **params).sum(), far)
    assert torch.isfinite(grad).all()


def test_cache_round_trip(field: BodyField, tmp_path: Path):
    path = field.save(tmp_path / "field.npz")
    loaded = BodyField.load(path, field.data)
    for name, buf in field.named_buffers():
        assert torch.equal(buf, getattr(loaded, name)), name
    assert loaded.key == field.key and loaded.dims == field.dims
    again = BodyField.for_model(field.data, **field.settings)
    assert torch.equal(again.node_tri, field.node_tri)
    other = toy_body(seed=0)
    other.v_template = other.v_template + 0.01
    with pytest.raises(ValueError):
        BodyField.load(path, other)
