"""The storage interface against a local directory and a real S3-compatible server (moto, server mode)."""

from __future__ import annotations

import pytest
from svc_helpers import Workers, post_scan, service_env, wait_job

from loopreg.serve import free_port
from service.storage import LocalStorage, NotStored, S3Storage

BUCKET = "loopreg-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=BUCKET)  # fmt: skip
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    return S3Storage(BUCKET, "pre/fix", endpoint_url=request.getfixturevalue("s3_endpoint"))


def test_storage_contract(storage, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"x" * 3_000_000)
    storage.put_file("jobs/a/scan.ply", src)
    storage.put_file("jobs/a/out/body.obj", src)
    storage.put_file("jobs/b/scan.ply", src)
    assert storage.exists("jobs/a/scan.ply") and not storage.exists("jobs/a/nope")
    chunks = list(storage.iter_bytes("jobs/a/out/body.obj", chunk_size=1 << 20))
    assert len(chunks) >= 3 and b"".join(chunks) == src.read_bytes()
    storage.get_file("jobs/a/scan.ply", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    with pytest.raises(NotStored):
        storage.iter_bytes("jobs/zzz/scan.ply")
    with pytest.raises(NotStored):
        storage.get_file("jobs/zzz/scan.ply", tmp_path / "x")
    assert storage.delete_prefix("jobs/a/") == 2
    assert not storage.exists("jobs/a/scan.ply") and storage.exists("jobs/b/scan.ply")
    storage.ping()


def test_local_storage_refuses_escaping_keys(tmp_path):
    with pytest.raises(NotStored):
        LocalStorage(tmp_path / "s").iter_bytes("../../etc/passwd")


def test_end_to_end_through_s3(s3_endpoint, redis_server, make_client, scan_cm, tmp_path):
    """API and worker share nothing but Redis and the bucket, as on separate machines."""
    env = service_env(redis_server.url, f"s3://{BUCKET}/e2e", s3_endpoint_url=s3_endpoint, queue_name="s3q")
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    client = make_client(env)
    pool = Workers(env, tmp_path)
    try:
        pool.start()
        job_id = post_scan(client, scan_cm).json()["id"]
        assert wait_job(client, job_id)["status"] == "finished"
        r = client.get(f"/jobs/{job_id}/mesh", params={"kind": "body", "format": "ply"})
        assert r.status_code == 200 and r.content.startswith(b"ply")
        store = S3Storage(BUCKET, "e2e", endpoint_url=s3_endpoint)
        assert store.exists(f"jobs/{job_id}/out/params.json")
        client.delete(f"/jobs/{job_id}")
        assert not store.exists(f"jobs/{job_id}/out/params.json")
    finally:
        pool.stop_all()


def _cloud_ply(n: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(0)
    points = (rng.random((n, 3)) * [0.5, 1.7, 0.3]).astype("<f4")
    head = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
    head += "property float x\nproperty float y\nproperty float z\nend_header\n"
    return head.encode() + points.tobytes()


def test_uploads_stream_to_s3_in_parts(s3_endpoint, redis_server, make_client):
    """No staging file: the scan goes to the bucket in 5 MiB parts; a rejected scan leaves nothing behind."""
    import boto3

    env = service_env(redis_server.url, f"s3://{BUCKET}/stream", s3_endpoint_url=s3_endpoint,
                      queue_name="s3-idle", s3_part_mb="5")  # fmt: skip
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    client = make_client(env)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    scan = _cloud_ply(1_000_000)  # 11.4 MiB: 3 parts
    r = client.post("/register", files={"scan": ("cloud.ply", scan)})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    obj = s3.get_object(Bucket=BUCKET, Key=f"stream/jobs/{job_id}/scan.ply")
    assert obj["Body"].read() == scan
    assert obj["ETag"].strip('"').endswith("-3")  # a multipart object of 3 parts
    assert not list(make_client.spool.iterdir()), "the upload was staged"

    # header checks run on the streamed bytes: rejected -> parts aborted, no object, nothing queued
    bad = scan[:-1000]  # truncated: the header needs more bytes than were sent
    r = client.post("/register", files={"scan": ("cloud.ply", bad)})
    assert r.status_code == 422 and "truncated" in r.json()["detail"], r.text
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix="stream/").get("Uploads", []) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/").get("Contents", [])]
    assert keys == [f"stream/jobs/{job_id}/scan.ply"], keys
    r = client.post("/register", files={"scan": ("cloud.exe", scan)})  # refused at the part's headers
    assert r.status_code == 415
    r = client.post("/register", files={"scan": ("cloud.ply", scan)}, data={"units": "furlong"})
    assert r.status_code == 422 and "units" in r.json()["detail"]
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix="stream/").get("Uploads", []) == []
    assert len(s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/")["Contents"]) == 1
    # over the size limit mid-stream (no Content-Length), after a part was sent: the upload is aborted
    small = make_client(env, max_upload_mb=7)

    def chunks():
        yield b'--B0UND\r\nContent-Disposition: form-data; name="scan"; filename="big.ply"\r\n\r\n'
        for i in range(0, len(scan), 1 << 20):
            yield scan[i : i + (1 << 20)]
        yield b"\r\n--B0UND--\r\n"

    r = small.post(
        "/register", content=chunks(), headers={"content-type": "multipart/form-data; boundary=B0UND"}
    )
    assert r.status_code == 413, r.text
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix="stream/").get("Uploads", []) == []
    assert len(s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/")["Contents"]) == 1


def test_malformed_uploads_streamed_to_s3(s3_endpoint, redis_server, make_client, scan_cm):
    """The malformed-upload set through the S3 streaming path: no 5xx, no parts or objects left behind."""
    import boto3
    import numpy as np
    import trimesh
    from malformed import iter_cases

    env = service_env(redis_server.url, f"s3://{BUCKET}/fuzz", s3_endpoint_url=s3_endpoint,
                      queue_name="s3-fuzz-idle", s3_part_mb="5")  # fmt: skip
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    client = make_client(env)
    scan = trimesh.load(scan_cm, process=False)
    accepted, errors = 0, []
    with np.errstate(all="ignore"):
        uploads = list(iter_cases(np.asarray(scan.vertices), np.asarray(scan.faces)))
    for case, name, content, fields in uploads:
        r = client.post("/register", files={"scan": (name, content)}, data=fields)
        if r.status_code >= 500 or (r.status_code != 202 and "problem+json" not in r.headers["content-type"]):
            errors.append(f"{case}: {r.status_code} {r.text[:200]}")
        accepted += r.status_code == 202
    assert not errors, "\n".join(errors)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix="fuzz/").get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="fuzz/").get("KeyCount", 0) == accepted


def test_streamed_upload_to_a_missing_bucket_is_503(s3_endpoint, redis_server, make_client):
    env = service_env(redis_server.url, "s3://no-such-bucket/x", s3_endpoint_url=s3_endpoint,
                      queue_name="s3-idle", s3_part_mb="5")  # fmt: skip
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    client = make_client(env)
    for n in (1000, 600_000):  # one PUT at commit; multipart parts while streaming
        r = client.post("/register", files={"scan": ("cloud.ply", _cloud_ply(n))})
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert "storage" in r.json()["detail"]
