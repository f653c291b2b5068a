"""Synthetic suites are deterministic files with exact ground truth; bench writes the JSON contract."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh

pytest.importorskip("anny", reason="synthetic shapes need the 'anny' extra")

from loopreg.bench.run import gt_body, markdown_table, run_bench  # noqa: E402
from loopreg.data.scan_io import load_scan  # noqa: E402
from loopreg.data.synth import generate_suite  # noqa: E402
from loopreg.fit.export import transform  # noqa: E402
from loopreg.fit.metrics import point_to_surface  # noqa: E402


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_twice_gives_identical_files(tmp_path):
    for run in ("a", "b"):
        subprocess.run(
            [sys.executable, "-m", "loopreg.cli", "synth", "--suite", "clothed", "--n", "2", "--seed", "1",
             "--out", str(tmp_path / run), "--quiet"],
            check=True,
        )  # fmt: skip
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 7
    assert all(a[k] == b[k] for k in a)


def test_ground_truth_is_exact_and_scan_frame_is_recorded(tmp_path, default_model):
    out = generate_suite("minimal", 2, 3, tmp_path)
    index = json.loads((out / "index.json").read_text())
    for item in index["items"]:
        gt = json.loads((out / item["gt"]).read_text())
        verts, _ = gt_body(default_model, gt)
        stored = trimesh.load(out / item["gt_body"], process=False).vertices
        assert np.allclose(verts, stored, atol=1e-5)  # model(gt params) is the GT body
        T = np.asarray(gt["to_scan"])
        scale = np.cbrt(np.linalg.det(T[:3, :3]))
        assert any(np.isclose(scale, s) for s in (1.0, 100.0, 1000.0))  # m, cm or mm
        scan = load_scan(out / item["scan"])
        back = transform(scan.points, np.linalg.inv(T))
        d = point_to_surface(back[::20], verts, default_model.faces.numpy())
        assert np.median(d) < 0.005  # the minimal scan lies on the GT body


def test_bench_quick_writes_contract(tmp_path):
    report = run_bench("minimal", 1, 1000, data_dir=tmp_path / "suite", log=lambda *_: None)
    keys = ("suite", "n", "seed", "v2v_cm", "mpjpe_cm", "scan_to_body_mm", "failure_rate", "part_accuracy",
            "corr_err_cm", "seconds_per_scan", "peak_rss_mb", "machine", "baseline")  # fmt: skip
    for key in keys:
        assert key in report, key
    for key in ("mean", "median", "p95"):
        assert np.isfinite(report["v2v_cm"][key]) and np.isfinite(report["baseline"]["v2v_cm"][key])
    assert report["baseline"]["seconds_per_scan"]["median"] > 0
    assert "| baseline |" in markdown_table(report)
    assert torch.get_num_threads() >= 1
