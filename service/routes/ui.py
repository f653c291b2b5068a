"""The web viewer: `/` serves service/static/index.html, `/static/...` its scripts and vendored three.js.

The page needs no API key itself (it asks for one and sends it as X-API-Key to the API routes). Every
file comes from the package; nothing is fetched from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
_static = StaticFiles(directory=STATIC_DIR)

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The viewer page."""
    headers = {"Cache-Control": "no-cache"}
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)


@router.api_route("/static/{path:path}", methods=["GET", "HEAD"])
async def static(path: str, request: Request) -> Response:
    """Static files (ETag + 304 and path checks from Starlette; a missing file is a problem+json 404)."""
    response = await _static.get_response(path, request.scope)
    response.headers.setdefault("Cache-Control", "no-cache")
    return response
