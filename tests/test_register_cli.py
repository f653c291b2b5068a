"""`loopreg register`: outputs in the scan's frame, and hostile files rejected with exit 2."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh

from loopreg.fit.metrics import point_to_surface
from loopreg.threads import REGISTER_THREADS
from loopreg.viz.render import sample_surface


def _register(scan, out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "loopreg.cli", "register", str(scan), "--out", str(out), "--quiet", *extra],
        capture_output=True,
        text=True,
    )


def test_register_writes_contract_outputs_in_scan_frame(tmp_path, default_model):
    gen = torch.Generator().manual_seed(2)
    body = default_model(
        betas=torch.randn(1, 10, generator=gen), body_pose=0.15 * torch.randn(1, 69, generator=gen)
    )
    pts, _ = sample_surface(body.vertices[0].numpy(), default_model.faces.numpy(), 20000)
    R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # z up, in cm
    scan = pts @ R.T * 100 + np.array([50.0, -20.0, 90.0])
    trimesh.PointCloud(scan).export(tmp_path / "scan.ply")
    res = _register(tmp_path / "scan.ply", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    for name in ("params.json", "params.npz", "body.obj", "scan_parts.ply", "report.json", "preview.png"):
        assert (out / name).exists(), name
    params = json.loads((out / "params.json").read_text())
    assert params["units"] == "cm" and params["up"] == "+z"
    assert len(params["betas"]) == 10 and len(params["body_pose"]) == 69 and len(params["joints_scan"]) == 24
    fitted = trimesh.load(out / "body.obj", process=False)
    d = point_to_surface(scan[::10], np.asarray(fitted.vertices), np.asarray(fitted.faces))
    assert np.median(d) < 1.5  # cm: the body overlays the scan in the scan's own frame
    report = json.loads((out / "report.json").read_text())
    assert report["scan_to_body_mm"]["median"] < 15 and "total" in report["timings_s"]
    assert report["cpu_threads"] == REGISTER_THREADS  # the registration ran on the default thread count


def _hostile(tmp_path):
    files = {}
    files["garbage.ply"] = bytes(range(256)) * 10
    ok = trimesh.PointCloud(np.random.default_rng(0).random((1000, 3))).export(file_type="ply")
    files["truncated.ply"] = ok[: len(ok) // 2]
    nan = np.random.default_rng(0).random((1000, 3))
    nan[5] = np.nan
    files["nan.xyz"] = "\n".join(" ".join(map(str, p)) for p in nan).encode()
    files["one.xyz"] = b"0 0 0\n"
    files["huge.ply"] = b"ply\nformat binary_little_endian 1.0\nelement vertex 100000000\n" \
        b"property float x\nproperty float y\nproperty float z\nend_header\n" + b"\0" * 120  # fmt: skip
    files["empty.obj"] = b""
    files["scan.docx"] = b"PK\x03\x04"
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return list(files)


@pytest.mark.parametrize("index", range(7))
def test_hostile_files_exit_2_with_one_line(tmp_path, index):
    name = _hostile(tmp_path)[index]
    res = _register(tmp_path / name, tmp_path / "out")
    assert res.returncode == 2, (name, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("loopreg: error:") and name in lines[0], res.stderr


def test_register_on_cuda_matches_cpu(tmp_path):
    """The worker's CUDA path: the same scan registered on both devices lands on the same body."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    from loopreg.fit.pipeline import RegisterOptions, register_scan

    scan = "examples/scan_clothed.ply"
    reports = {d: register_scan(scan, tmp_path / d, RegisterOptions(device=d)) for d in ("cpu", "cuda")}
    assert reports["cuda"]["device"].startswith("cuda")
    bodies = {d: np.asarray(trimesh.load(tmp_path / d / "body.obj", process=False).vertices) for d in reports}
    unit = json.loads((tmp_path / "cpu" / "params.json").read_text())["units"]
    per_cm = {"m": 100.0, "cm": 1.0, "mm": 0.1}[unit]
    assert np.linalg.norm(bodies["cuda"] - bodies["cpu"], axis=1).mean() * per_cm < 1.0
    mm = [reports[d]["scan_to_body_mm"]["mean"] for d in reports]
    assert abs(mm[0] - mm[1]) < 1.0, mm


def test_worker_loads_the_pipeline_warm():
    """worker.pipeline picks loopreg.fit.pipeline.load_pipeline: register_scan, with the body model, its
    field and the network loaded by a warm-up registration (the worker's first job pays no loading)."""
    import loopreg.fit.pipeline as pipeline
    from worker.pipeline import load_pipeline

    for cache in (pipeline._MODELS, pipeline._FIELDS, pipeline._NETWORKS):
        cache.clear()  # as in a new worker process (they reload on demand)
    fn, name = load_pipeline("full")
    assert name == "full" and fn is pipeline.register_scan
    device = str(pipeline.pick_device("auto"))
    assert (None, device) in pipeline._MODELS and (None, device) in pipeline._FIELDS
    assert device in pipeline._NETWORKS
