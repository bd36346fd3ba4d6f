"""The web page in a real browser (Debian's chromium), against a real `knowledge-search serve` process.

Uploads a Markdown file and watches its job finish, searches and sees the match highlighted, asks a question,
watches the streamed answer arrive and opens a cited passage. The service runs with KS_ROOT_PATH=/kb behind a
small gateway that serves it under /kb/ and strips the prefix (as nginx's `location /kb/ { proxy_pass ...; }`),
so the page's relative URLs and the streamed answer are exercised through a proxy. Screenshots go to
test-artifacts/ui/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.core.config import Settings
from tests.conftest import REQUIRE_SERVICES
from tests.integration.test_process import Server, _free_port

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; playwright's own browser downloads are not used
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
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
HANDBOOK = """# Employee handbook

## Remote work

Employees may work from home up to three days a week, with their manager's agreement.

## 有給休暇

入社から6か月継続して勤務した社員には、10日の有給休暇が付与されます。
"""


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


def test_upload_search_ask_in_the_page(browser: Any, gateway: Gateway, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="ja-JP")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{gateway.url}/kb/")
    expect(page).to_have_title("knowledge-search")
    # without a key the documents list says so; with the admin key pasted it loads
    expect(page.locator("#documents")).to_contain_text("API key")
    page.fill("#api-key", KEY)
    page.locator("#api-key").dispatch_event("change")
    expect(page.locator("#documents")).to_contain_text("No documents yet")

    # upload with wait=false and watch the job finish
    page.fill("#collection", "handbook")
    page.set_input_files("#file", str(handbook))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#uploads li.ok")).to_contain_text("indexed", timeout=60_000)
    expect(page.locator("#documents")).to_contain_text("Employee handbook")
    page.screenshot(path=str(SHOTS / "1-uploaded.png"), full_page=True)

    # search: Japanese, keyword mode, the matched words are highlighted
    page.fill("#query", "有給休暇は何日")
    page.select_option("#mode", "keyword")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#results .result").first).to_contain_text("Employee handbook")
    marks = page.locator("#results .result").first.locator("mark").all_inner_texts()
    assert "有給" in "".join(marks), marks
    page.screenshot(path=str(SHOTS / "2-search-ja.png"), full_page=True)
    page.fill("#query", "work from home")
    page.select_option("#mode", "hybrid")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#results .result").first.locator("mark").first).to_have_text("work")
    page.screenshot(path=str(SHOTS / "2-search-en.png"), full_page=True)

    # ask: the streamed answer appears with citations; a citation opens its passage
    page.click("#tab-ask")
    page.fill("#question", "How many days a week can employees work from home?")
    page.click("#ask-form button[type=submit]")
    answer = page.locator(".turn .answer").last
    expect(answer).to_contain_text("three days", timeout=60_000)
    expect(page.locator(".turn .meta").last).to_contain_text("Grounded")
    page.screenshot(path=str(SHOTS / "3-answer.png"), full_page=True)
    answer.locator("button.cite").first.click()
    dialog = page.locator("#passage")
    expect(dialog).to_be_visible()
    expect(page.locator("#passage-title")).to_contain_text("Employee handbook")
    expect(page.locator("#passage-where")).to_contain_text("Remote work")
    expect(page.locator("#passage-quote")).to_contain_text("three days a week")
    page.screenshot(path=str(SHOTS / "4-passage.png"), full_page=True)
    dialog.locator("button[value=close]").click()
    expect(dialog).to_be_hidden()
    assert not errors, errors
