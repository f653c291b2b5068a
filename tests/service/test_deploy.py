"""No Docker engine here: check that the compose file and Dockerfiles fit the project."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services():
    services = _compose()["services"]
    assert set(services) == {"redis", "api", "worker"}
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--appendfsync everysec" in redis_cmd
    assert "--maxmemory-policy noeviction" in redis_cmd
    assert services["redis"]["healthcheck"]["test"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["LOOPREG_REDIS_URL"].startswith("redis://redis:")
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert (ROOT / services[name]["build"]["dockerfile"]).exists()


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [tuple(ln.split(None, 1)) for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_dockerfiles_run_what_exists():
    for name in ("api", "worker"):
        steps = _instructions(ROOT / "docker" / f"{name}.Dockerfile")
        for op, arg in steps:
            if op == "COPY":
                for src in arg.split()[:-1]:
                    assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"
        cmd = json.loads(next(arg for op, arg in steps if op == "CMD"))
        assert cmd[:2] == ["python", "-m"]
        assert importlib.util.find_spec(cmd[2]) is not None, f"{name}: module {cmd[2]} not found"
    worker_base = _instructions(ROOT / "docker" / "worker.Dockerfile")[0][1]
    assert "cuda" in worker_base
