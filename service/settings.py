"""Service and worker settings, read from LOOPREG_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from loopreg.threads import REGISTER_THREADS


class Settings(BaseSettings):
    """One settings object for API and workers (they must agree on Redis, queue and storage)."""

    model_config = SettingsConfigDict(env_prefix="LOOPREG_", env_file=None, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "loopreg"
    # A local directory, or s3://bucket[/prefix] (with s3_endpoint_url for MinIO/moto/other S3-compatibles).
    storage: str = "./data"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Uploads stream straight to S3 in parts of this size (>= 5); memory is about one part per upload.
    s3_part_mb: float = Field(default=8.0, ge=5)
    spool_dir: str | None = None  # where uploads are staged before storage (default: system temp dir)

    max_upload_mb: float = Field(default=512.0, gt=0)
    max_scan_points: int = Field(default=5_000_000, gt=0)
    # Comma-separated or JSON list; empty = no authentication.
    api_keys: Annotated[list[str], NoDecode] = []

    job_timeout_s: int = Field(default=1800, gt=0)
    result_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    failure_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    retries: int = Field(default=2, ge=0)
    retry_backoff_s: Annotated[list[int], NoDecode] = [10, 60]

    # Worker liveness: a killed worker's job is reclaimed about heartbeat_ttl_s after its last beat.
    worker_ttl_s: int = Field(default=60, ge=20)
    heartbeat_ttl_s: int = Field(default=60, ge=2)
    housekeeping_s: float = Field(default=5.0, gt=0)
    pipeline: str = "auto"  # auto | full | interim
    # CPU threads per registration in a worker (0: one per core); see loopreg/threads.py for why 1.
    threads: int = Field(default=REGISTER_THREADS, ge=0)
    stage_delay_s: float = 0.0  # test/demo knob: sleep after each progress report in the worker

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        return _split(value)

    @field_validator("retry_backoff_s", mode="before")
    @classmethod
    def _split_backoff(cls, value: object) -> object:
        return _split(value)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def _split(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
