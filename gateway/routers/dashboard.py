"""The bureau dashboard: one static page and its files, served as they are (no build step).

The page holds no data and needs no credential; it reads `/v1/reports/...` with the token the
analyst enters, so the same 401/403 rules apply to it as to any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from gateway.problems import ProblemError

STATIC = Path(__file__).resolve().parent.parent / "static"
# Only the page's own files: the token is pasted into this page, so nothing else may run here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}
# The files are listed once, at import: a request names one of them or gets 404, so no path
# from a request ever reaches the file system.
FILES = {
    path.relative_to(STATIC).as_posix(): path
    for path in sorted(STATIC.rglob("*"))
    if path.is_file() and path.suffix in MEDIA_TYPES
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = FILES.get(name)
    if path is None:
        raise ProblemError(404, "Not found", f"no dashboard file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    """The bureau dashboard page."""
    return _file("dashboard.html")


@router.get("/dashboard/static/{name:path}")
async def static_file(name: str) -> FileResponse:
    """One of the page's scripts, styles or the charting library."""
    return _file(name)
