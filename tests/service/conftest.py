"""Real Redis servers, real worker processes, real files: fixtures for the service tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from svc_helpers import RedisServer, Workers, make_settings, service_env

from loopreg.serve import free_port

if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed (apt-get install redis-server)", allow_module_level=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def aof_redis(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path, aof=True).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def storage_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def base_env(redis_server, storage_dir) -> dict:
    return service_env(redis_server.url, storage_dir)


@pytest.fixture(scope="session")
def session_workers(base_env, tmp_path_factory) -> Iterator[Workers]:
    workers = Workers(base_env, tmp_path_factory.mktemp("worker-logs"))
    workers.start()
    yield workers
    workers.stop_all()


@pytest.fixture
def workers(base_env, tmp_path) -> Iterator[Workers]:
    pool = Workers(base_env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def make_client(base_env, tmp_path_factory) -> Callable:
    from fastapi.testclient import TestClient

    from service.app import create_app

    spool = tmp_path_factory.mktemp("spool")

    def make(env: dict | None = None, **overrides) -> TestClient:
        settings = make_settings(env or base_env, spool_dir=str(spool), **overrides)
        return TestClient(create_app(settings), raise_server_exceptions=False)

    make.spool = spool
    return make


@pytest.fixture(scope="session")
def client(make_client, session_workers):
    return make_client()


@pytest.fixture(scope="session")
def scan_cm(tmp_path_factory) -> Path:
    """The default body, arms lowered, in centimetres, as a binary PLY."""
    import torch

    from loopreg.body import BodyModel

    model = BodyModel.load()
    pose = torch.zeros(1, 69)
    pose[0, 3 * 15 + 2], pose[0, 3 * 16 + 2] = -1.1, 1.1  # shoulders down (A-pose)
    vertices = model(body_pose=pose).vertices[0].detach().numpy().astype(np.float64) * 100.0
    path = tmp_path_factory.mktemp("scans") / "person.ply"
    trimesh.Trimesh(vertices, model.faces.numpy(), process=False).export(path)
    return path
