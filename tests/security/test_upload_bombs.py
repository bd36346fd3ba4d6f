"""Item 4: a write key uploads decompression bombs and parser bombs to a real server. Each is refused with a
problem+json that names the limit and what to do, the server's memory stays bounded, and it keeps serving."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench import hostile
from tests.helpers import PROBLEM
from tests.security.conftest import Api, new_key, texts, upload

GIB = 1 << 30


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _refused(r: httpx.Response, *settings: str) -> str:
    assert r.status_code in (413, 422), r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    detail = r.json()["detail"]
    assert any(s in detail for s in settings), detail
    assert "Split the document" in detail  # says what to do
    return detail


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {
        # the file of the report: 480 KB on the wire, 300 MB of empty paragraphs inside
        "docx": hostile.docx_bomb(folder / "bomb.docx", 300),
        # the same, with headers that declare 1,000 bytes for document.xml
        "lying": hostile.docx_lying_sizes(folder / "lying.docx", 300),
        "pdf": hostile.pdf_flate_bomb(folder / "flate.pdf", 300),
        "html": hostile.html_deep(folder / "deep.html", 20),
    }


def test_bombs_are_refused_and_the_server_stays_bounded_and_serving(
    admin: Api, server, space: str, bombs: dict[str, Path]
):
    writer = new_key(admin, server, scopes=["read", "write"])
    assert bombs["docx"].stat().st_size < 600_000
    # wait=true and wait=false alike: the docx bomb's own directory gives it away before anything is queued
    for wait in ("true", "false"):
        r = writer.post(
            f"/v1/documents?wait={wait}",
            files={"file": ("bomb.docx", bombs["docx"].read_bytes())},
            data={"collection": space},
        )
        assert r.status_code == 413
        _refused(r, "KS_MAX_COMPRESSION_RATIO")
    # headers that lie are caught by counting what really inflates, before python-docx reads a part
    lying = writer.post(
        "/v1/documents", files={"file": ("lying.docx", bombs["lying"].read_bytes())}, data={"collection": space}
    )
    _refused(lying, "KS_MAX_PARSE_MB", "KS_MAX_INFLATED_MB", "KS_MAX_COMPRESSION_RATIO")
    pdf = writer.post(
        "/v1/documents", files={"file": ("flate.pdf", bombs["pdf"].read_bytes())}, data={"collection": space}
    )
    _refused(pdf, "KS_MAX_PDF_STREAM_MB")
    html = writer.post(
        "/v1/documents", files={"file": ("deep.html", bombs["html"].read_bytes())}, data={"collection": space}
    )
    _refused(html, "KS_MAX_PARSE_MB")
    # nothing of them was kept
    assert admin.get("/v1/documents", params={"collection": space}).json()["items"] == []
    # before the fix the first bomb alone took the server from 0.5 to 7.1 GiB
    assert _peak_rss(server.proc.pid) < 1.5 * GIB
    # and the service still answers, for this key and for everyone else
    assert admin.get("/healthz").status_code == 200
    ok = upload(writer, "The shuttle bus leaves the east gate at 08:10.", space)
    assert ok.status_code == 201, ok.text
    assert texts(writer, "shuttle bus", space)
