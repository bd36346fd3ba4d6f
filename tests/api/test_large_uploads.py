"""Large uploads: spooled to disk, parsed and indexed part by part, refused early when over the limit (both
backends). The part size is made small here so a few kilobytes stream in many parts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.ingest import parsers
from app.ingest.parsers import parse
from app.ingest.parsers import text as text_parser
from tests.helpers import PROBLEM

PARAGRAPHS = [
    f"Rule {i}: the badge of a visitor on floor {i % 9} must be returned to desk {i} before {i % 12 + 7} pm. "
    f"Lost badge number {1000 + i} is reported to the security office the same day."
    for i in range(60)
]
TEXT = (
    "\r\n\r\n".join(PARAGRAPHS) + "\n\nThe archive room key hangs in the cabinet behind the mail sorter.\n"
).encode()


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsers, "STREAM_TEXT_ABOVE", 2000)
    monkeypatch.setattr(text_parser, "WINDOW", 1500)


def test_a_large_text_upload_is_indexed_part_by_part_with_exact_offsets(
    client: TestClient, container: Any, streaming: None
):
    r = client.post("/v1/documents", files={"file": ("security-rules.txt", TEXT, "text/plain")})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["status"] == "indexed" and doc["size_bytes"] == len(TEXT)
    assert doc["job"]["progress_done"] == doc["job"]["progress_total"] == doc["chunk_count"]

    chunks = client.get(f"/v1/documents/{doc['id']}/chunks").json()["items"]
    assert len(chunks) == doc["chunk_count"] > 10
    whole = parse(TEXT, "text/plain").text  # what the offsets point into
    for chunk in chunks:
        assert whole[chunk["source"]["char_start"] : chunk["source"]["char_end"]] == chunk["text"]
    assert [c["ordinal"] for c in chunks] == list(range(len(chunks)))
    covered = "".join(c["text"] for c in chunks)
    assert all(p.split(":")[0] in covered for p in PARAGRAPHS)  # every paragraph made it in

    r = client.post("/v1/search", json={"query": "archive room key cabinet", "mode": "keyword", "top_k": 1})
    assert r.json()["results"][0]["document_id"] == doc["id"]
    spool = container.settings.data_dir / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []  # the spool file went into the blob store...
    assert not container.ingest._blobs.exists(doc["id"])  # ...and left it once indexed


def _chunked_multipart(data: bytes, block: int = 64 * 1024) -> tuple[Iterator[bytes], str]:
    boundary = "ks-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for i in range(0, len(data), block):
            yield data[i : i + block]
        yield f"\r\n--{boundary}--\r\n".encode()

    return body(), f"multipart/form-data; boundary={boundary}"


def test_an_upload_over_the_limit_without_a_length_is_refused_and_leaves_nothing(client: TestClient, container: Any):
    container.settings = container.settings.model_copy(update={"max_upload_mb": 1.0})
    body, content_type = _chunked_multipart(b"Too long a line of text.\n" * 50_000)  # 1.25 MB, no Content-Length
    r = client.post("/v1/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert "KS_MAX_UPLOAD_MB" in r.json()["detail"]
    assert client.get("/v1/documents").json()["items"] == []
    spool = container.settings.data_dir / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []

    body, content_type = _chunked_multipart(b"Short enough to be accepted the same way.\n" * 3, block=16)
    r = client.post("/v1/documents", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 201, r.text
