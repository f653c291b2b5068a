"""The FastAPI application."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis import Redis

from service.errors import fix_openapi, install_handlers
from service.jobs import get_queue
from service.metrics import Metrics, MetricsMiddleware
from service.routes import health, jobs, ui
from service.settings import Settings, get_settings
from service.storage import make_storage


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=30)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        redis.close()

    app = FastAPI(
        title="LoopReg",
        version="0.1.0",
        summary="Register a parametric human body model to 3D human scans.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.redis = redis
    app.state.storage = make_storage(settings)
    app.state.metrics = Metrics(get_queue(settings, redis))
    install_handlers(app)
    app.include_router(jobs.router)
    app.include_router(health.router)
    app.include_router(ui.router)  # web viewer at / (service/static)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = fix_openapi(default_openapi())
        return app.openapi_schema

    app.openapi = openapi
    return app
