"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from redis import Redis
from rq import Queue

from service.errors import Problem
from service.jobs import get_queue
from service.settings import Settings
from service.storage import Storage

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="required when keys are set")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _redis(request: Request) -> Redis:
    return request.app.state.redis


def _storage(request: Request) -> Storage:
    return request.app.state.storage


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[Redis, Depends(_redis)]
StorageDep = Annotated[Storage, Depends(_storage)]


def _queue(settings: SettingsDep, redis: RedisDep) -> Queue:
    return get_queue(settings, redis)


QueueDep = Annotated[Queue, Depends(_queue)]


def require_api_key(settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]) -> None:
    """No-op when LOOPREG_API_KEYS is empty; otherwise X-API-Key must match one key (constant time)."""
    if not settings.api_keys:
        return
    if not key:
        raise Problem(401, "missing X-API-Key header; send -H 'X-API-Key: <your key>'", "missing-api-key")
    given = key.encode()
    matches = [hmac.compare_digest(given, k.encode()) for k in settings.api_keys]  # compare with every key
    if not any(matches):
        raise Problem(
            401, "the X-API-Key is not valid; check the key or ask the operator for one", "bad-api-key"
        )


ApiKey = Annotated[None, Depends(require_api_key)]
