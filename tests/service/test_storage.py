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
