"""The web page at / and its static files: search, ask and upload through the public API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The page talks to this same service only; no inline script or style, so injected markup cannot run.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    """The web page: search, ask and upload through the public API."""
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
