"""The web page in a real browser (Debian's chromium), against a real `knowledge-search serve` process.

Uploads a Markdown file and watches its job finish, searches and sees the match highlighted, asks a question,
watches the streamed answer arrive and opens a cited passage. The service runs with KS_ROOT_PATH=/kb behind a
small gateway that serves it under /kb/ and strips the prefix (as nginx's `location /kb/ { proxy_pass ...; }`),
so the page's relative URLs and the streamed answer are exercised through a proxy; nothing outside the service
may be fetched. Screenshots go to test-artifacts/ui/ (and docs/img/page.png with UPDATE_DOC_SCREENSHOTS=1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import KEY, Gateway, open_offline, screenshot

pytestmark = pytest.mark.browser
HANDBOOK = """# Employee handbook

## Remote work

Employees may work from home up to three days a week, with their manager's agreement.

## 有給休暇

入社から6か月継続して勤務した社員には、10日の有給休暇が付与されます。
"""


def test_upload_search_ask_in_the_page(browser: Any, gateway: Gateway, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK, encoding="utf-8")
    opened = open_offline(browser, gateway, locale="ja-JP")
    page, errors = opened.page, opened.errors
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
    screenshot(page, "1-uploaded.png")

    # search: Japanese, keyword mode, the matched words are highlighted
    page.fill("#query", "有給休暇は何日")
    page.select_option("#mode", "keyword")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#results .result").first).to_contain_text("Employee handbook")
    marks = page.locator("#results .result").first.locator("mark").all_inner_texts()
    assert "有給" in "".join(marks), marks
    screenshot(page, "2-search-ja.png")
    page.fill("#query", "work from home")
    page.select_option("#mode", "hybrid")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#results .result").first.locator("mark").first).to_have_text("work")
    screenshot(page, "2-search-en.png", docs="page.png")

    # ask: the streamed answer appears with citations; a citation opens its passage
    page.click("#tab-ask")
    page.fill("#question", "How many days a week can employees work from home?")
    page.click("#ask-form button[type=submit]")
    answer = page.locator(".turn .answer").last
    expect(answer).to_contain_text("three days", timeout=60_000)
    expect(page.locator(".turn .meta").last).to_contain_text("Grounded")
    screenshot(page, "3-answer.png")
    answer.locator("button.cite").first.click()
    dialog = page.locator("#passage")
    expect(dialog).to_be_visible()
    expect(page.locator("#passage-title")).to_contain_text("Employee handbook")
    expect(page.locator("#passage-where")).to_contain_text("Remote work")
    expect(page.locator("#passage-quote")).to_contain_text("three days a week")
    screenshot(page, "4-passage.png")
    dialog.locator("button[value=close]").click()
    expect(dialog).to_be_hidden()
    assert not errors, errors
    assert not opened.outside, opened.outside
    opened.page.context.close()
