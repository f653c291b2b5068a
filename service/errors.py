"""RFC 9457 problem details: one exception type, handlers, and OpenAPI response declarations."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://loopreg.dev/problems/"
log = logging.getLogger("loopreg.service")


class ProblemDetails(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None


class Problem(Exception):
    """Raise anywhere in a request to answer with application/problem+json."""

    def __init__(
        self, status: int, detail: str, kind: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.headers = headers


def problem_response(request: Request, status: int, detail: str, kind: str | None = None, headers=None):
    kind = kind or HTTPStatus(status).phrase.lower().replace(" ", "-")
    body = ProblemDetails(
        type=TYPE_BASE + kind,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
    )
    return JSONResponse(body.model_dump(), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(request, exc.status, exc.detail, exc.kind, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
        return problem_response(request, exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return problem_response(request, 422, "invalid request: " + "; ".join(parts), "invalid-request")

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError):
        log.warning("redis error on %s: %s", request.url.path, exc)
        detail = "the job store (Redis) is unreachable; retry in a few seconds"
        return problem_response(request, 503, detail, "store-unavailable", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(
            request, 500, "internal error; retry later or report it with the time of the request"
        )


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for problem answers (media type fixed in `fix_openapi`)."""
    return {code: {"model": ProblemDetails, "description": HTTPStatus(code).phrase} for code in codes}


def fix_openapi(schema: dict) -> dict:
    """Declare error bodies as application/problem+json instead of application/json."""
    for path in schema.get("paths", {}).values():
        for op in path.values():
            for code, resp in op.get("responses", {}).items():
                content = resp.get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
                if code.isdigit() and int(code) >= 400 and ref.endswith("/HTTPValidationError"):
                    # FastAPI's default 422 body; our handler answers every validation error as a problem
                    content.pop("application/json")
                    content[PROBLEM_JSON] = {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
                elif code.isdigit() and int(code) >= 400 and ref.endswith("/ProblemDetails"):
                    content[PROBLEM_JSON] = content.pop("application/json")
    return schema
