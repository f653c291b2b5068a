"""Upload checks happen before anything is queued: 4xx problem+json, no job, no stored file."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from redis import Redis
from svc_helpers import assert_problem

PLY_HEAD = b"ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
PLY_HEAD += b"property float z\nend_header\n"


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


BAD = {
    "random-bytes-unknown-ext": ("noise.bin", np.random.default_rng(0).bytes(4096), 415, "unsupported"),
    "no-extension": ("scan", b"ply\n", 415, "no extension"),
    "random-bytes-as-ply": ("noise.ply", np.random.default_rng(1).bytes(4096), 422, "start with"),
    "empty": ("empty.ply", b"", 422, "empty"),
    "truncated-ply": ("cut.ply", PLY_HEAD % 1000 + b"\0" * 120, 422, "truncated"),
    "huge-vertex-count": ("huge.ply", PLY_HEAD % 10**8 + b"\0" * 12, 422, "limit"),
    "ply-no-end-header": ("open.ply", b"ply\nformat ascii 1.0\nelement vertex 3\n", 422, "end_header"),
    "obj-without-vertices": ("text.obj", b"# just a comment\nhello world\n", 422, "vertex"),
    "binary-as-obj": ("bin.obj", b"\0\1\2\3" * 100, 422, "binary"),
    "stl-garbage": ("x.stl", b"this is not an stl at all" * 10, 422, "stl"),
    "glb-wrong-length": ("x.glb", b"glTF" + struct.pack("<II", 2, 9999) + b"\0" * 20, 422, "truncated"),
    "npy-wrong-shape": ("x.npy", _npy(np.zeros((10, 2), np.float32)), 422, "shape"),
    "xyz-words": ("x.xyz", b"a b c\nd e f\n", 422, "numbers"),
    "off-no-header": ("x.off", b"3 1 0\n0 0 0\n", 422, "off"),
}


@pytest.fixture(scope="module")
def idle(make_client, base_env):
    """A client on a queue no worker listens to, to count what gets queued."""
    client = make_client(queue_name="uploads-idle")
    yield client, Redis.from_url(base_env["LOOPREG_REDIS_URL"])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_upload_is_rejected_before_queueing(idle, storage_dir, make_client, case):
    client, redis = idle
    name, content, status, word = BAD[case]
    before = redis.llen("rq:queue:uploads-idle")
    r = client.post("/register", files={"scan": (name, content)})
    assert_problem(r, status, word)
    assert redis.llen("rq:queue:uploads-idle") == before
    assert not list(make_client.spool.iterdir()), "staged upload left behind"


def test_good_headers_pass_and_queue(idle, scan_cm, storage_dir):
    client, redis = idle
    r = client.post("/register", files={"scan": ("person.ply", scan_cm.read_bytes())}, data={"units": "cm"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.headers["location"] == f"/jobs/{job_id}"
    assert (storage_dir / "jobs" / job_id / "scan.ply").read_bytes() == scan_cm.read_bytes()
    body = client.get(f"/jobs/{job_id}").json()
    assert body["status"] == "queued" and body["progress"]["stage"] == "queued"
    assert_problem(client.get(f"/jobs/{job_id}/result"), 409, "queued")
    # canceling a queued job deletes its files
    assert client.delete(f"/jobs/{job_id}").json()["status"] == "canceled"
    assert not (storage_dir / "jobs" / job_id).exists()


@pytest.mark.parametrize(
    ("fields", "word"),
    [({"units": "furlong"}, "units"), ({"up": "w"}, "up"), ({"offsets": "maybe"}, "offsets"),
     ({"model": "/etc/passwd"}, "model"), ({"colour": "red"}, "unknown form field")],
)  # fmt: skip
def test_bad_options(idle, scan_cm, fields, word):
    client, _ = idle
    r = client.post("/register", files={"scan": ("p.ply", scan_cm.read_bytes())}, data=fields)
    assert_problem(r, 422, word)


def test_not_multipart_and_missing_file(idle):
    client, _ = idle
    assert_problem(client.post("/register", json={"scan": "x"}), 415, "multipart")
    assert_problem(client.post("/register", data={"units": "cm"}, files={"other": ("a", b"b")}), 422, "scan")


def test_size_limit_aborts_stream(make_client, scan_cm):
    client = make_client(max_upload_mb=0.05, queue_name="uploads-idle")
    big = b"ply\n" + b"\0" * 200_000

    def chunks():  # no Content-Length: the limit must be enforced while streaming
        boundary = b"xyzBOUNDARY"
        yield (
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="scan"; filename="big.ply"\r\n\r\n'
        )
        for i in range(0, len(big), 16384):
            yield big[i : i + 16384]
        yield b"\r\n--" + boundary + b"--\r\n"

    headers = {"content-type": "multipart/form-data; boundary=xyzBOUNDARY"}
    r = client.post("/register", content=chunks(), headers=headers)
    assert_problem(r, 413, "limit")
    assert not list(make_client.spool.iterdir())
    r = client.post("/register", files={"scan": ("big.ply", big)})  # with Content-Length: refused up front
    assert_problem(r, 413, "limit")


def test_api_keys(make_client, scan_cm):
    client = make_client(api_keys="k-one,k-two", queue_name="uploads-idle")
    assert client.get("/healthz").status_code == 200
    assert_problem(client.get("/jobs/abc"), 401, "X-API-Key")
    assert_problem(client.get("/jobs/abc", headers={"X-API-Key": "nope"}), 401, "not valid")
    assert_problem(client.get("/jobs/abc", headers={"X-API-Key": "k-two"}), 404, "no job")
    r = client.post(
        "/register", files={"scan": ("p.ply", scan_cm.read_bytes())}, headers={"X-API-Key": "k-one"}
    )
    assert r.status_code == 202


def test_openapi_declares_problems(idle):
    client, _ = idle
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/register"]["post"]
    for code in ("413", "415", "422"):
        assert "application/problem+json" in post["responses"][code]["content"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    assert_problem(client.get("/nowhere"), 404, "/docs")
