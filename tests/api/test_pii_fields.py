"""PII redaction reaches everything a document stores, on both backends: the metadata database's row (title, file
name, metadata) and the chunk store's chunks (text, title, heading path, metadata), at upload, on a queued upload,
and on PATCH; a collection without redaction keeps all of it."""

from __future__ import annotations

import json

import pytest

EMAIL, PHONE = "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ", "090 1234 5678"
SECRETS = (EMAIL, PHONE, "taro@example.com", "090.1234.5678", "０９０－１２３４－５６７８", "hanako@example.jp")
MARKDOWN = f"""# 連絡先 {EMAIL}

担当者の電話は {PHONE} です。出張申請は 2024.01.15 までに提出してください。

## 予備 090.1234.5678

経費は 1,234 円までです。
"""


def _everything(client, doc_id: str) -> str:
    """What the service stores and shows of a document: its row, its chunks and what search returns."""
    row = client.get(f"/v1/documents/{doc_id}").json()
    chunks = client.get(f"/v1/documents/{doc_id}/chunks").json()["items"]
    hits = client.post("/v1/search", json={"query": "出張申請 経費", "mode": "keyword", "top_k": 50}).json()["results"]
    return json.dumps([row, chunks, [h for h in hits if h["document_id"] == doc_id]], ensure_ascii=False)


def _upload(client, collection: str, *, wait: bool = True):  # type: ignore[no-untyped-def]
    return client.post(
        f"/v1/documents?wait={str(wait).lower()}",
        files={"file": (f"議事録 {EMAIL}.md", MARKDOWN.encode())},
        data={
            "collection": collection,
            "title": f"議事録 (担当 {PHONE})",
            "metadata": json.dumps(
                {"owner": "taro@example.com", "tags": ["hr", "０９０－１２３４－５６７８"], "year": 2026}
            ),
        },
    )


@pytest.fixture
def redacting(client) -> str:  # type: ignore[no-untyped-def]
    assert client.put("/v1/collections/pii", json={"redact_pii": True}).status_code == 200
    return "pii"


def test_title_file_name_metadata_and_heading_paths_are_redacted_in_both_stores(client, redacting: str):
    r = _upload(client, redacting)
    assert r.status_code == 201, r.text
    doc = r.json()
    stored = _everything(client, doc["id"])
    for secret in SECRETS:
        assert secret not in stored
    assert doc["title"] == "議事録 (担当 [PHONE])" and doc["filename"] == "議事録 [EMAIL].md"
    assert doc["metadata"] == {"owner": "[EMAIL]", "tags": ["hr", "[PHONE]"], "year": 2026}
    chunks = client.get(f"/v1/documents/{doc['id']}/chunks").json()["items"]
    assert chunks[-1]["source"]["heading_path"] == ["連絡先 [EMAIL]", "予備 [PHONE]"]
    assert "2024.01.15" in stored and "1,234 円" in stored  # ordinary numbers stay
    assert doc["redactions"] == 3  # in the text


def test_a_queued_upload_never_shows_the_pii_it_came_with(client, redacting: str):
    r = _upload(client, redacting, wait=False)
    assert r.status_code == 202, r.text
    queued = json.dumps(client.get(f"/v1/documents/{r.json()['id']}").json(), ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in queued


def test_patch_redacts_title_and_metadata_in_both_stores(client, redacting: str):
    doc = _upload(client, redacting).json()
    r = client.patch(
        f"/v1/documents/{doc['id']}",
        json={"title": f"連絡 {EMAIL}", "metadata": {"contact": "hanako@example.jp", "phone": PHONE}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "連絡 [EMAIL]"
    stored = _everything(client, doc["id"])
    for secret in SECRETS:
        assert secret not in stored
    assert '"contact": "[EMAIL]"' in stored and '"phone": "[PHONE]"' in stored


def test_a_collection_without_redaction_keeps_everything(client):
    doc = _upload(client, "plain").json()
    assert doc["title"] == f"議事録 (担当 {PHONE})" and doc["metadata"]["owner"] == "taro@example.com"
    assert doc["redactions"] is None
    assert PHONE in _everything(client, doc["id"])
