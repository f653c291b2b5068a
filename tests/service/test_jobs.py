"""End to end: API (TestClient) -> real Redis -> real worker process -> files in storage."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import trimesh
from svc_helpers import assert_problem, post_scan, wait_job

PARAMS_KEYS = {"model", "betas", "global_orient", "body_pose", "transl", "to_scan", "units", "up", "gender",
               "joints_scan"}  # fmt: skip
REPORT_KEYS = {"scan_to_body_mm", "scan_to_body_offsets_mm", "per_part_mm", "timings_s", "device",
               "num_scan_points"}  # fmt: skip


def test_health_ready_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] >= 1
    text = client.get("/metrics").text
    assert "loopreg_workers" in text and "loopreg_http_requests_total" in text


def test_register_poll_download(client, scan_cm, storage_dir):
    r = post_scan(client, scan_cm, units="auto", offsets="true")
    assert r.status_code == 202
    job_id = r.json()["id"]
    job = wait_job(client, job_id)
    assert job["status"] == "finished", job
    assert job["progress"] == {"stage": "done", "fraction": 1.0}
    assert job["started_at"] and job["ended_at"] and job["error"] is None

    params = client.get(f"/jobs/{job_id}/result").json()
    assert PARAMS_KEYS <= set(params) and params["units"] == "cm"
    report = client.get(f"/jobs/{job_id}/report").json()
    assert REPORT_KEYS <= set(report) and report["num_scan_points"] == 6890

    body = client.get(f"/jobs/{job_id}/mesh", params={"kind": "body", "format": "obj"})
    assert body.status_code == 200
    mesh = trimesh.load(io.BytesIO(body.content), file_type="obj", process=False)
    scan = trimesh.load(scan_cm, process=False)
    # overlays the scan: same frame and units (cm), same height, close surfaces
    assert np.allclose(mesh.bounds[:, 1], scan.bounds[:, 1], atol=1.0)
    assert abs(mesh.centroid - scan.centroid).max() < 5.0
    _, dist, _ = trimesh.proximity.closest_point(mesh, scan.vertices[::5])
    assert np.median(dist) < 2.0  # cm

    for kind in ("body", "scan_parts", "body_offsets"):
        for fmt in ("obj", "ply", "glb"):
            r = client.get(f"/jobs/{job_id}/mesh", params={"kind": kind, "format": fmt})
            assert r.status_code == 200, (kind, fmt, r.text)
    assert client.get(f"/jobs/{job_id}/preview").content[:4] == b"\x89PNG"
    assert_problem(client.get(f"/jobs/{job_id}/mesh", params={"kind": "skeleton"}), 422, "kind")

    # DELETE removes the stored files; the record says so
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    assert not (storage_dir / "jobs" / job_id).exists()
    assert_problem(client.get(f"/jobs/{job_id}/result"), 404, "deleted")


def _write_xyz(path, points):
    np.savetxt(path, points, fmt="%.6f")
    return path


def test_bad_scans_fail_cleanly_and_worker_goes_on(client, scan_cm, tmp_path):
    good = trimesh.load(scan_cm, process=False).vertices
    nan = good.copy()
    nan[::7] = np.nan
    cases = {
        "nan.xyz": (_write_xyz(tmp_path / "nan.xyz", nan), "nan"),
        "few.xyz": (_write_xyz(tmp_path / "few.xyz", good[:100]), "points"),
        "huge.xyz": (_write_xyz(tmp_path / "huge.xyz", good * 1e5), ""),
        "flat.xyz": (_write_xyz(tmp_path / "flat.xyz", good * [1, 1, 0]), ""),
    }
    ids = {name: post_scan(client, path).json()["id"] for name, (path, _) in cases.items()}
    for name, job_id in ids.items():
        job = wait_job(client, job_id)
        if name == "flat.xyz" and job["status"] == "finished":
            continue  # a flat (depth-map-like) cloud may legitimately register
        assert job["status"] == "failed", (name, job)
        assert job["error"] and "Traceback" not in job["error"]
        assert cases[name][1] in job["error"].lower(), job["error"]
        assert_problem(client.get(f"/jobs/{job_id}/result"), 409, "failed")
    # the same worker still serves a good job
    job_id = post_scan(client, scan_cm).json()["id"]
    assert wait_job(client, job_id)["status"] == "finished"


def test_unknown_job(client):
    assert_problem(client.get("/jobs/0123456789abcdef"), 404, "no job")
    assert_problem(client.delete("/jobs/../../etc"), 404)


def test_report_is_json(client, scan_cm):
    job_id = post_scan(client, scan_cm, units="cm", up="y").json()["id"]
    assert wait_job(client, job_id)["status"] == "finished"
    report = json.loads(client.get(f"/jobs/{job_id}/report").content)
    assert report["scan_to_body_mm"]["mean"] >= 0


def test_job_duration_histogram(client, scan_cm):
    job_id = post_scan(client, scan_cm).json()["id"]
    assert wait_job(client, job_id)["status"] == "finished"
    text = client.get("/metrics").text
    count = re.search(r'^loopreg_job_duration_seconds_count\{outcome="finished"\} (\S+)$', text, re.M)
    assert count and float(count.group(1)) >= 1, text
    assert 'loopreg_job_duration_seconds_bucket{le="+Inf",outcome="finished"}' in text or (
        'loopreg_job_duration_seconds_bucket{outcome="finished",le="+Inf"}' in text
    )


def test_full_pipeline_when_available(make_client, workers, scan_cm):
    """The worker runs loopreg.fit.pipeline.register_scan once it exists (skipped before)."""
    pytest.importorskip("loopreg.fit.pipeline")
    client = make_client(queue_name="fullq")
    workers.start(queue_name="fullq", pipeline="full", threads=2)  # LOOPREG_THREADS: not the default 1
    job_id = post_scan(client, scan_cm, units="cm").json()["id"]
    job = wait_job(client, job_id, timeout=150)
    assert job["status"] == "finished", job
    report = client.get(f"/jobs/{job_id}/report").json()
    assert report["scan_to_body_mm"]["median"] < 20.0
    assert report["cpu_threads"] == 2  # the worker's setting reached the registration
