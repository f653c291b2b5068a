"""Prometheus metrics: request counters/latency plus queue gauges read from Redis at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from redis import Redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

# Job durations are observed by the workers (other processes, other machines) and kept in Redis, so every
# API replica exposes the same fleet-wide histogram. Upper bounds in seconds; +Inf is implied.
JOB_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
JOB_OUTCOMES = ("finished", "failed", "canceled")
_JOB_KEY = "loopreg:metrics:{}:job_seconds:{}"  # queue, outcome -> hash {bucket: count, sum, count}


def record_job_duration(redis: Redis, queue: str, outcome: str, seconds: float) -> None:
    """Called by the worker when a job ends (not when it dies: a killed worker records nothing)."""
    bucket = next((str(b) for b in JOB_BUCKETS if seconds <= b), "+Inf")
    key = _JOB_KEY.format(queue, outcome)
    with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, bucket, 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.execute()


def _job_histogram(q: Queue) -> HistogramMetricFamily:
    hist = HistogramMetricFamily(
        "loopreg_job_duration_seconds", "Job run time on the worker, by outcome", labels=["outcome"]
    )
    for outcome in JOB_OUTCOMES:
        raw = q.connection.hgetall(_JOB_KEY.format(q.name, outcome))
        data = {k.decode(): v.decode() for k, v in raw.items()}
        cumulative, buckets = 0, []
        for bound in (*JOB_BUCKETS, "+Inf"):
            cumulative += int(data.get(str(bound), 0))
            buckets.append((str(float(bound)) if bound != "+Inf" else "+Inf", cumulative))
        hist.add_metric([outcome], buckets, float(data.get("sum", 0.0)))
    return hist


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
            durations = _job_histogram(q)
        except Exception:  # Redis down: no gauges rather than a failed scrape
            return
        jobs = GaugeMetricFamily("loopreg_jobs", "Jobs by state in the queue", labels=["state"])
        for state, value in values.items():
            jobs.add_metric([state], value)
        yield jobs
        yield GaugeMetricFamily("loopreg_workers", "Live RQ workers on the queue", value=workers)
        yield durations


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
