"""Prometheus metrics: request counters/latency plus queue gauges read from Redis at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from starlette.types import ASGIApp, Receive, Scope, Send


class QueueCollector:
    def __init__(self, queue: Queue):
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        q = self.queue
        try:
            values = {
                "queued": q.count,
                "started": StartedJobRegistry(queue=q).count,
                "finished": FinishedJobRegistry(queue=q).count,
                "failed": FailedJobRegistry(queue=q).count,
            }
            workers = len(Worker.all(queue=q))
        except Exception:  # Redis down: no gauges rather than a failed scrape
            return
        jobs = GaugeMetricFamily("loopreg_jobs", "Jobs by state in the queue", labels=["state"])
        for state, value in values.items():
            jobs.add_metric([state], value)
        yield jobs
        yield GaugeMetricFamily("loopreg_workers", "Live RQ workers on the queue", value=workers)


class Metrics:
    def __init__(self, queue: Queue):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loopreg_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "loopreg_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.uploads = Counter(
            "loopreg_uploads", "Scan uploads by outcome", ["outcome"], registry=self.registry
        )
        self.upload_bytes = Counter("loopreg_upload_bytes", "Bytes of accepted scans", registry=self.registry)
        self.registry.register(QueueCollector(queue))


class MetricsMiddleware:
    """Pure ASGI middleware (does not buffer bodies, so uploads stay streamed)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], path, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], path).observe(time.perf_counter() - start)
