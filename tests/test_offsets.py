"""Per-vertex offsets (body + D) and the body mesh export formats."""

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from loopreg.cli import main
from loopreg.data.scan_io import load_scan
from loopreg.fit.metrics import point_to_surface
from loopreg.fit.offsets import (
    OffsetConfig,
    fit_offsets,
    uniform_laplacian,
    vertex_normals,
    vertex_normals_of,
)
from loopreg.fit.pipeline import RegisterOptions, register_loaded
from loopreg.geometry import sample_surface

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "scan_clothed.ply"


def _smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


@pytest.fixture(scope="module")
def rest(default_model):
    v = default_model.rest().vertices[0].numpy().astype(np.float64)
    return v, default_model.faces.numpy()


def test_vertex_normals_of_one_mesh_match_vertex_normals(default_model):
    faces = default_model.faces.long()
    gen = torch.Generator().manual_seed(0)
    verts = default_model.rest().vertices.repeat(2, 1, 1) + 0.01 * torch.randn(2, 6890, 3, generator=gen)
    normals_of = vertex_normals_of(faces, verts.shape[1])
    for v in (verts, verts[0]):  # a batch and one mesh
        fast, ref = normals_of(v), vertex_normals(v, faces)
        assert fast.shape == ref.shape
        assert torch.allclose(fast, ref, atol=1e-5)
        assert torch.allclose(fast.norm(dim=-1), torch.ones(()), atol=1e-5)


def _offsets(v, f, pts, **cfg) -> np.ndarray:
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return fit_offsets(as_t(v), f, as_t(pts), OffsetConfig(**cfg)).numpy().astype(np.float64)


def _roughness(f: np.ndarray, D: np.ndarray) -> float:
    """Mean |L D| (uniform Laplacian): zero for a constant field, large for per-vertex noise."""
    L = uniform_laplacian(f, len(D))
    return float(torch.sparse.mm(L, torch.as_tensor(D, dtype=torch.float32)).norm(dim=1).mean())


def test_offsets_fit_a_clothed_scan_smoothly(rest):
    v, f = rest
    # "clothing": the rest body pushed out along its normals by 1-3 cm over the torso and legs, smoothly
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    mask = (1 - _smoothstep(0.2, 0.28, np.abs(v[:, 0]))) * (1 - _smoothstep(0.45, 0.6, v[:, 1]))
    mask = mask * _smoothstep(-0.72, -0.62, v[:, 1])  # torso and legs; not the arms, head or feet
    amount = mask * (0.01 + 0.02 * (0.5 + 0.5 * np.sin(6 * v[:, 1]) * np.cos(5 * v[:, 0])))
    true_D = amount[:, None] * normals
    pts, _ = sample_surface(v + true_D, f, 6000, 0)

    D = _offsets(v, f, pts)
    before = point_to_surface(pts, v, f).mean()
    after = point_to_surface(pts, v + D, f).mean()
    assert before > 0.01  # the test has something to fit
    assert after < 0.3 * before and after < 0.005, (before, after)
    assert np.linalg.norm(D - true_D, axis=1).mean() < 0.005  # close to the true displacement
    assert np.linalg.norm(D, axis=1).max() <= 0.1 + 1e-6  # the cap holds
    # smooth: as smooth as the true field, far smoother than a per-vertex noisy field that fits as well
    noisy = true_D + np.random.default_rng(0).normal(0, 0.003, true_D.shape)
    assert _roughness(f, D) < 2 * _roughness(f, true_D)
    assert _roughness(f, D) < 0.2 * _roughness(f, noisy)


def test_holes_do_not_drag_the_body(rest):
    v, f = rest
    pts, _ = sample_surface(v, f, 8000, 0)
    back = (pts[:, 2] < 0) & (np.abs(pts[:, 0]) < 0.2) & (pts[:, 1] > 0.0) & (pts[:, 1] < 0.5)
    pts = pts[(pts[:, 1] < 0.62) & ~back]  # no head, a hole in the back
    unseen = cKDTree(pts).query(v)[0] > 0.03  # vertices 3 cm or more from every scan point
    assert unseen.sum() > 500

    n = np.linalg.norm(_offsets(v, f, pts), axis=1)
    assert n[unseen].max() < 0.005 and n[unseen].mean() < 0.002, (n[unseen].max(), n[unseen].mean())
    assert n[~unseen].mean() < 0.002  # the scan is the body itself: nothing to offset anywhere
    # what the robust body->scan term prevents: a plain quadratic pull drags the head onto the shoulders
    plain = np.linalg.norm(_offsets(v, f, pts, robust_m=1.0), axis=1)
    assert plain[unseen].mean() > 0.02


def test_formats_option():
    assert RegisterOptions().formats == ("obj",)
    assert RegisterOptions(formats="obj, PLY,glb,ply").formats == ("obj", "ply", "glb")
    assert RegisterOptions.from_dict({"formats": [".glb"]}).formats == ("glb",)
    with pytest.raises(ValueError, match="fbx"):
        RegisterOptions(formats="obj,fbx")


def test_bad_formats_exit_2_with_one_line(tmp_path, capsys):
    code = main(["register", str(EXAMPLE), "--out", str(tmp_path / "out"), "--quiet", "--formats", "obj,fbx"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("loopreg: error:") and "'fbx'" in err[0], err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_pipeline_writes_offsets_and_formats(tmp_path):
    scan = load_scan(EXAMPLE)
    threads = torch.get_num_threads()
    options = RegisterOptions(network=False, device="cpu", threads=2)
    _, write = register_loaded(scan, options)
    assert torch.get_num_threads() == threads  # the registration's thread count is restored after it

    plain = write(tmp_path / "plain")["report"]  # defaults: no offsets, OBJ only
    assert plain["cpu_threads"] == 2 and torch.get_num_threads() == threads
    assert plain["scan_to_body_offsets_mm"] is None and "offsets" not in plain["timings_s"]
    assert sorted(p.name for p in (tmp_path / "plain").glob("body*")) == ["body.obj"]

    options.offsets, options.formats = True, ("obj", "ply", "glb")  # the writer reads the options
    out = tmp_path / "full"
    rep = write(out)["report"]
    body = load_scan(out / "body.obj")
    for name in ("body.ply", "body.glb", "body_offsets.obj", "body_offsets.ply", "body_offsets.glb"):
        mesh = load_scan(out / name)
        assert mesh.points.shape == (6890, 3) and np.array_equal(mesh.faces, body.faces), name
    assert np.allclose(load_scan(out / "body.glb").points, body.points, atol=1e-5)
    assert np.allclose(load_scan(out / "body_offsets.ply").points, load_scan(out / "body_offsets.obj").points)

    timings = rep["timings_s"]
    assert timings["offsets"] > 0
    assert timings["total"] == pytest.approx(sum(v for k, v in timings.items() if k != "total"))
    with_d, without = rep["scan_to_body_offsets_mm"], rep["scan_to_body_mm"]
    assert with_d["mean"] < 0.6 * without["mean"], (with_d, without)
    # body_offsets.obj is in the scan's frame (metres here): it overlays the scan as the report says
    clothed = load_scan(out / "body_offsets.obj")
    d_mm = point_to_surface(scan.points, clothed.points, clothed.faces) * 1000
    assert abs(d_mm.mean() - with_d["mean"]) < 0.2
