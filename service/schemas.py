"""Response bodies of the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

JobState = Literal["queued", "started", "finished", "failed", "canceled"]


class Links(BaseModel):
    self: str
    result: str
    report: str
    mesh: str
    preview: str


class Progress(BaseModel):
    stage: str
    fraction: float


class JobCreated(BaseModel):
    id: str
    status: JobState
    links: Links


class JobView(BaseModel):
    id: str
    status: JobState
    progress: Progress
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    error: str | None
    links: Links


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    redis: bool
    workers: int
    storage: bool


def links(job_id: str) -> Links:
    base = f"/jobs/{job_id}"
    return Links(
        self=base,
        result=f"{base}/result",
        report=f"{base}/report",
        mesh=f"{base}/mesh?kind=body&format=obj",
        preview=f"{base}/preview",
    )
