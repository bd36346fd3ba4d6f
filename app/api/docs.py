"""Swagger UI at /docs and ReDoc at /redoc, served from installed packages: no CDN, so they work where the
machine reaches nothing but this service, and under a gateway prefix (KS_ROOT_PATH).

The JavaScript and CSS come from the `fastapi-offline` package (pinned in pyproject.toml), which ships the
swagger-ui-dist and ReDoc bundles; the pages themselves are ours so that no inline script runs and the
Content-Security-Policy can keep every fetch on this origin.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(str(files("fastapi_offline") / "static"))
ASSETS_URL = "/docs/assets"
# Swagger UI and ReDoc style their elements inline and ReDoc searches in a worker made from a blob; nothing is
# loaded from anywhere but this service.
DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_SWAGGER = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - Swagger UI</title>
  <link rel="icon" type="image/png" href="{root}{assets}/favicon.png">
  <link rel="stylesheet" href="{root}{assets}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{root}/openapi.json"></div>
  <script src="{root}{assets}/swagger-ui-bundle.js"></script>
  <script src="{root}/static/docs.js"></script>
</body>
</html>
"""

_REDOC = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - ReDoc</title>
  <link rel="icon" type="image/png" href="{root}{assets}/favicon.png">
</head>
<body>
  <redoc spec-url="{root}/openapi.json" hide-download-button></redoc>
  <script src="{root}{assets}/redoc.standalone.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


def _page(template: str, request: Request) -> HTMLResponse:
    # root_path is the gateway prefix uvicorn was started with (KS_ROOT_PATH), as FastAPI's own pages use it.
    root = escape(request.scope.get("root_path", "").rstrip("/"), quote=True)
    html = template.format(title=escape(request.app.title), root=root, assets=ASSETS_URL)
    return HTMLResponse(html, headers=DOCS_HEADERS)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: every operation, Authorize with a key, Try it out."""
    return _page(_SWAGGER, request)


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the same schema as a reference to read."""
    return _page(_REDOC, request)


def install(app: FastAPI) -> None:
    """Mount the pages and the packaged assets. The app must be built with docs_url=None and redoc_url=None."""
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
