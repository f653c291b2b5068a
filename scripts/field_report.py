"""Accuracy, size and speed of the diffused body field (loopreg.body.field) for one body model.

    python scripts/field_report.py [model.npz] [--res 64] [--poses 50] [--device cpu|cuda] [--toy]

Prints a markdown table: error at the model's vertices against smplx posing (exact and grid lookup),
offsets of points 2 cm off the surface after posing, build time, cache size, RAM and lookup times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loopreg.body.data import BodyModelData  # noqa: E402
from loopreg.body.field import BodyField  # noqa: E402
from loopreg.body.model import BodyModel  # noqa: E402


def random_params(
    data: BodyModelData, n: int, sigma: float, seed: int, device: str
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = {
        "betas": torch.randn(n, data.num_betas, generator=g),
        "global_orient": sigma * torch.randn(n, 3, generator=g),
        "body_pose": sigma * torch.randn(n, 3 * (data.num_joints - 1), generator=g),
        "transl": 0.1 * torch.randn(n, 3, generator=g),
    }
    return {k: v.to(device) for k, v in params.items()}


def timed(fn, repeat: int = 3) -> float:
    """Best wall time of `repeat` runs (s), synchronising CUDA."""
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def vertex_errors(field: BodyField, params: dict, device: str) -> dict[str, torch.Tensor]:
    """Distance (m) between the field's posed vertices and smplx's, per lookup mode."""
    ref = BodyModel(field.data).to(device)(**params).vertices
    verts = field.v_template
    return {
        mode: (field.pose(verts, exact=mode == "exact", **params) - ref).norm(dim=-1)
        for mode in ("exact", "grid")
    }


def offset_points(data: BodyModelData, dist: float, device: str) -> torch.Tensor:
    mesh = trimesh.Trimesh(data.v_template, data.faces, process=False)
    return torch.as_tensor(data.v_template + dist * mesh.vertex_normals, dtype=torch.float32, device=device)


def offset_stats(field: BodyField, params: dict, device: str) -> dict[str, torch.Tensor]:
    """Points 2 cm off the surface: posed distance to their posed closest point, and grid vs exact posing."""
    pts = offset_points(field.data, 0.02, device)
    exact, grid = field.lookup(pts, exact=True), field.lookup(pts)
    posed = field.pose_sample(pts, exact, **params)
    posed_closest = field.pose_sample(exact.closest, exact, **params)
    return {
        "rest": (pts - exact.closest).norm(dim=-1),
        "posed": (posed - posed_closest).norm(dim=-1),
        "grid_vs_exact": (field.pose_sample(pts, grid, **params) - posed).norm(dim=-1),
    }


def dense_bytes(field: BodyField) -> int:
    """A dense float32 grid of closest point, weights, shape and pose blend shapes, as LoopReg stored it."""
    d = field.data
    return int(np.prod(field.dims)) * 4 * (3 + d.num_joints + 3 * d.num_betas + 3 * d.posedirs.shape[2])


def report(data: BodyModelData, res: int, n_poses: int, sigma: float, seed: int, device: str) -> list[tuple]:
    t = time.perf_counter()
    field = BodyField.build(data, res=res)
    build_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        disk = field.save(Path(tmp) / "field.npz").stat().st_size
    field = field.to(device)
    params = random_params(data, n_poses, sigma, seed, device)
    with torch.no_grad():
        verr = vertex_errors(field, params, device)
        off = offset_stats(field, params, device)
    pts = field.v_template[
        torch.randint(len(field.v_template), (10000,), generator=torch.Generator().manual_seed(1))
    ]
    pts = pts + 0.03 * torch.randn(pts.shape, generator=torch.Generator().manual_seed(2)).to(device)
    one = {k: v[:1] for k, v in params.items()}
    mem = field.nbytes()

    def mm(x: torch.Tensor) -> str:
        return f"{1000 * x.max():.3g} / {1000 * x.mean():.3g}"

    def cm(x: torch.Tensor) -> str:
        return f"{100 * x.max():.3f} / {100 * x.mean():.3f}"

    dev = "exact" if device == "cpu" else "exact (KD-tree on CPU)"
    return [
        ("model", f"{data.name}: {data.num_vertices} vertices, {len(data.faces)} triangles"),
        ("grid", f"{'x'.join(map(str, field.dims))} nodes, cell {100 * field.spacing:.2f} cm, margin 15 cm"),
        ("poses", f"{n_poses}, axis-angle ~ N(0, {sigma}) per joint, betas ~ N(0, 1), seed {seed}, {device}"),
        ("vertex error, exact lookup: max / mean (mm)", mm(verr["exact"])),
        ("vertex error, grid lookup: max / mean (mm)", mm(verr["grid"])),
        ("2 cm off surface: rest distance to closest point max / mean (cm)", cm(off["rest"])),
        ("2 cm off surface: posed distance to posed closest point max / mean (cm)", cm(off["posed"])),
        ("2 cm off surface: change of that distance max / mean (cm)", cm((off["posed"] - off["rest"]).abs())),
        ("2 cm off surface: grid vs exact posed point max / mean (cm)", cm(off["grid_vs_exact"])),
        ("2 cm off surface: grid vs exact posed point median / p95 (cm)",
         f"{100 * off['grid_vs_exact'].median():.3f} / {100 * off['grid_vs_exact'].quantile(0.95):.3f}"),
        ("build time (s, CPU)", f"{build_s:.2f}"),
        ("cache file on disk (KB)", f"{disk / 1024:.0f}"),
        ("RAM: grid buffers / model arrays (MB)", f"{mem['grid'] / 2**20:.2f} / {mem['model'] / 2**20:.2f}"),
        ("dense float32 grid of the full function, same nodes (MB)", f"{dense_bytes(field) / 2**20:.0f}"),
        ("lookup 10k points, grid (ms)", f"{1000 * timed(lambda: field.lookup(pts)):.1f}"),
        (f"lookup 10k points, {dev} (ms)", f"{1000 * timed(lambda: field.lookup(pts, exact=True)):.1f}"),
        ("pose 10k points x 1 pose, grid, forward+backward (ms)",
         f"{1000 * timed(lambda: grad_step(field, pts, one)):.1f}"),
    ]  # fmt: skip


def grad_step(field: BodyField, pts: torch.Tensor, params: dict) -> None:
    x = pts.clone().requires_grad_(True)
    field.pose(x, **params).square().sum().backward()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=str(ROOT / "model_store" / "loopreg_default.npz"))
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--poses", type=int, default=50)
    ap.add_argument("--sigma", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--toy", action="store_true", help="use the tests' capsule body instead of a model file")
    args = ap.parse_args(argv)
    if args.toy:
        from tests.test_field import toy_body

        data = toy_body()
    else:
        data = BodyModelData.load(args.model)
    rows = report(data, args.res, args.poses, args.sigma, args.seed, args.device)
    print("| quantity | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
