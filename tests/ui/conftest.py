"""Browser tests: Debian's chromium driven by Playwright against a real `knowledge-search serve` process.

The service runs with KS_ROOT_PATH=/kb behind a small gateway that serves it under /kb/ and strips the prefix (as
nginx's `location /kb/ { proxy_pass ...; }`), so relative URLs and streamed replies are exercised through a
proxy. Every request the page makes to anywhere but the gateway is refused and recorded (``offline_page``), so a
page that needs the internet fails. Screenshots go to test-artifacts/ui/; with UPDATE_DOC_SCREENSHOTS=1 the ones
docs/ shows are refreshed too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.core.config import Settings
from tests.conftest import REQUIRE_SERVICES
from tests.integration.test_process import Server, _free_port

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; playwright's own browser downloads are not used
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "ui"
DOC_SHOTS = ROOT / "docs" / "img"
# No network, no sandbox (root in a container), nothing fetched in the background.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "ui-test-admin-key"


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (KS_REQUIRE_SERVICES=1): apt-get install -y chromium; pip install playwright")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"chromium is not installed at {CHROMIUM}")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(Settings(data_dir=tmp_path / "data"), KS_ADMIN_KEY=KEY, KS_ROOT_PATH="/kb")
    yield s
    s.stop()


class Gateway:
    """Serves the backend under /kb/ with the prefix stripped, streaming replies through (SSE included)."""

    HOP = {b"host", b"content-length", b"transfer-encoding", b"connection", b"content-encoding"}

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, port=port, log_level="warning", lifespan="off", interface="asgi3")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        if not path.startswith("/kb/"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not under /kb/"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        url = self.backend + path[len("/kb") :] + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k not in self.HOP]
        async with (
            httpx.AsyncClient(timeout=120) as client,
            client.stream(scope["method"], url, headers=headers, content=body) as reply,
        ):
            out = [(k, v) for k, v in reply.headers.raw if k.lower() not in self.HOP]
            await send({"type": "http.response.start", "status": reply.status_code, "headers": out})
            async for chunk in reply.aiter_bytes():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def gateway(server: Server) -> Iterator[Gateway]:
    g = Gateway(server.url)
    yield g
    g.stop()


@dataclass
class OfflinePage:
    page: Any
    outside: list[str]  # requests to anywhere but the gateway, refused
    errors: list[str]  # uncaught page errors and console errors (a CSP refusal is one)


def open_offline(browser: Any, gateway: Gateway, locale: str = "en-US") -> OfflinePage:
    """A page in a fresh context where every request to anywhere but the gateway is refused and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale=locale)
    outside: list[str] = []
    errors: list[str] = []

    def only_the_service(route: Any) -> None:
        if route.request.url.startswith(gateway.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if _is_error(msg) else None)
    return OfflinePage(page, outside, errors)


@pytest.fixture
def offline_page(browser: Any, gateway: Gateway) -> Iterator[OfflinePage]:
    opened = open_offline(browser, gateway)
    yield opened
    opened.page.context.close()


def _is_error(message: Any) -> bool:
    # A 4xx the page asked for on purpose (no key yet) is logged by chromium too; it is not a fault of the page.
    return message.type == "error" and not message.text.startswith("Failed to load resource: the server responded")


def screenshot(page: Any, name: str, *, docs: str | None = None) -> None:
    """Into test-artifacts/ui/; also into docs/img/ (as ``docs``) when UPDATE_DOC_SCREENSHOTS=1."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    if docs and os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_SHOTS / docs))  # the first screen, as a reader first sees it
