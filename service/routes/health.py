"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rq import Worker

from service.deps import QueueDep, RedisDep, StorageDep
from service.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The API process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Not ready: Redis, storage or workers missing"}},
)
def readyz(redis: RedisDep, queue: QueueDep, storage: StorageDep) -> JSONResponse:
    """Ready when Redis answers, storage is reachable and at least one worker is alive."""
    ok_redis, workers, ok_storage = False, 0, False
    try:
        ok_redis = bool(redis.ping())
        workers = len(Worker.all(queue=queue))
    except Exception:
        pass
    try:
        storage.ping()
        ok_storage = True
    except Exception:
        pass
    ready = ok_redis and ok_storage and workers > 0
    body = Ready(
        status="ready" if ready else "not ready", redis=ok_redis, workers=workers, storage=ok_storage
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
