"""Uploading, listing, reading and deleting documents through the REST API (both backends)."""

from __future__ import annotations

import json

from tests.helpers import PROBLEM, upload_text

LEAVE = (
    "# Leave policy\n\n## Paid leave\n\nEmployees receive 10 days of paid annual leave after six months of service.\n\n"
    "## Sick leave\n\nEmployees may take up to 5 days of paid sick leave per year.\n"
)


def test_upload_markdown_file_becomes_searchable_with_its_structure(client):
    r = client.post(
        "/v1/documents",
        files={"file": ("leave.md", LEAVE.encode(), "text/markdown")},
        data={"collection": "hr", "metadata": json.dumps({"dept": "hr"})},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["status"] == "indexed"
    assert doc["collection"] == "hr"
    assert doc["title"] == "Leave policy"  # the document's own heading beats the file name
    assert doc["content_type"] == "text/markdown"
    assert doc["metadata"] == {"dept": "hr"}
    assert doc["chunk_count"] >= 2

    chunks = client.get(f"/v1/documents/{doc['id']}/chunks").json()["items"]
    assert [c["ordinal"] for c in chunks] == list(range(len(chunks)))
    sick = next(c for c in chunks if "sick leave per year" in c["text"])
    assert sick["source"]["heading_path"] == ["Leave policy", "Sick leave"]
    assert sick["source"]["char_end"] > sick["source"]["char_start"]

    hits = client.post("/v1/search", json={"query": "sick leave days", "top_k": 3}).json()["results"]
    assert hits[0]["document_id"] == doc["id"]
    assert "sick leave" in hits[0]["text"]


def test_json_text_upload(client):
    doc = upload_text(client, "Badges must be worn visibly at all times in the office.", title="Badge rule")
    assert doc["title"] == "Badge rule"
    assert doc["status"] == "indexed"
    got = client.get(f"/v1/documents/{doc['id']}").json()
    assert got["id"] == doc["id"] and got["chunk_count"] == 1


def test_same_content_twice_is_one_document(client):
    first = upload_text(client, "The cafeteria opens at 11:30.", collection="facilities")
    again = client.post("/v1/documents", json={"text": "The cafeteria opens at 11:30.", "collection": "facilities"})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    elsewhere = client.post("/v1/documents", json={"text": "The cafeteria opens at 11:30.", "collection": "other"})
    assert elsewhere.status_code == 201 and elsewhere.json()["id"] != first["id"]
    listed = client.get("/v1/documents", params={"collection": "facilities"}).json()["items"]
    assert [d["id"] for d in listed] == [first["id"]]


def test_delete_removes_document_and_chunks_everywhere(client):
    doc = upload_text(client, "The secret launch code word is pineapple-seventeen.")
    other = upload_text(client, "Pineapples grow in tropical climates.")
    assert client.delete(f"/v1/documents/{doc['id']}").status_code == 204
    assert client.get(f"/v1/documents/{doc['id']}").status_code == 404
    assert client.get(f"/v1/documents/{doc['id']}/chunks").status_code == 404
    for mode in ("keyword", "semantic", "hybrid"):
        hits = client.post("/v1/search", json={"query": "launch code word pineapple", "mode": mode}).json()["results"]
        assert doc["id"] not in {h["document_id"] for h in hits}
        assert other["id"] in {h["document_id"] for h in hits}
    answer = client.post("/v1/chat", json={"message": "What is the launch code word?"}).json()
    assert doc["id"] not in {c["document_id"] for c in answer["citations"]}
    assert doc["id"] not in {d["id"] for d in client.get("/v1/documents").json()["items"]}
    assert client.delete(f"/v1/documents/{doc['id']}").status_code == 404


def test_listing_pages_with_a_cursor(client):
    ids = [upload_text(client, f"Memo number {i}: the printer on floor {i} is out of toner.")["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/documents", params=params).json()
        assert len(page["items"]) <= 2
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert seen == list(reversed(ids))  # newest first


def test_wait_false_queues_then_a_worker_indexes(client, container):
    r = client.post("/v1/documents?wait=false", json={"text": "Queued documents are indexed by a worker."})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued" and body["job"]["status"] == "queued"
    from app.ingest.worker import JobWorker

    assert JobWorker(container.ingest).run_pending() == 1
    done = client.get(f"/v1/documents/{body['id']}").json()
    assert done["status"] == "indexed"
    assert done["job"]["status"] == "succeeded"
    assert done["job"]["progress_done"] == done["job"]["progress_total"] == done["chunk_count"] == 1


def test_bad_input_gets_problem_json_and_leaves_stored_data_intact(client):
    keep = upload_text(client, "This document must survive every bad upload.")
    cases = [
        ({"files": {"file": ("empty.txt", b"", "text/plain")}}, 422, "empty"),
        ({"files": {"file": ("fake.pdf", b"this is not a pdf at all", "application/pdf")}}, 422, "PDF"),
        ({"files": {"file": ("broken.pdf", b"%PDF-1.7\n garbage \x00\x01", "application/pdf")}}, 422, "PDF"),
        ({"files": {"file": ("pic.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")}}, 415, "support"),
        (
            {"files": {"file": ("a.txt", b"hello there", "text/plain")}, "data": {"metadata": "{not json"}},
            400,
            "metadata",
        ),
        ({"files": {"file": ("a.txt", b"hello there", "text/plain")}, "data": {"metadata": "[1, 2]"}}, 400, "object"),
        (
            {"files": {"file": ("a.txt", b"hello there", "text/plain")}, "data": {"collection": "../etc"}},
            400,
            "collection",
        ),
        ({"files": {"collection": (None, "x")}}, 400, "file"),
        ({"data": {"collection": "x"}}, 415, "multipart"),
        ({"json": {"text": ""}}, 422, "text"),
        ({"json": {"text": "ok", "collection": "bad name!"}}, 422, "collection"),
        ({"content": b"raw", "headers": {"content-type": "application/octet-stream"}}, 415, "multipart"),
    ]
    for kwargs, status, word in cases:
        r = client.post("/v1/documents", **kwargs)
        assert r.status_code == status, (kwargs, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        body = r.json()
        assert body["status"] == status and word.lower() in body["detail"].lower(), body
    listed = client.get("/v1/documents").json()["items"]
    assert [d["id"] for d in listed] == [keep["id"]]
    assert client.get(f"/v1/documents/{keep['id']}").json()["status"] == "indexed"


def test_file_names_never_become_paths(client, settings):
    r = client.post(
        "/v1/documents", files={"file": ("../../../../tmp/evil.txt", b"Traversal attempt text.", "text/plain")}
    )
    assert r.status_code == 201
    assert not any(p.name == "evil.txt" for p in settings.data_dir.rglob("*"))
    assert r.json()["title"] == "evil"


def test_upload_size_limit_is_413(client, container):
    container.ingest._max_upload_bytes = 1000  # the limit as KS_MAX_UPLOAD_MB would set it
    r = client.post("/v1/documents", files={"file": ("big.txt", b"word " * 400, "text/plain")})
    assert r.status_code == 413
    assert r.headers["content-type"].startswith(PROBLEM)
    assert "KS_MAX_UPLOAD_MB" in r.json()["detail"]


def test_unknown_document_is_404_problem(client):
    r = client.get("/v1/documents/0123456789abcdef0123456789abcdef")
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)


def test_ids_the_service_never_made_are_422_and_never_reach_a_database(client):
    """Postgres refuses a NUL byte in text with an error of its own: an id of that shape (in a path, or a chat's
    conversation_id) is refused at the edge on both backends, and the document stays as it was."""
    doc = upload_text(client, "Shuttle buses leave the east gate at 08:10.", title="shuttle")
    for method, path in (
        ("GET", "/v1/documents/a%00b"),
        ("GET", "/v1/documents/a%00b/chunks"),
        ("PATCH", "/v1/documents/a%00b"),
        ("DELETE", "/v1/documents/a%00b"),
        ("GET", "/v1/jobs/a%00b"),
        ("DELETE", "/v1/keys/a%00b"),
        ("GET", "/v1/sources/hr%00/syncs/abc"),
        ("GET", "/v1/audit?action=se%00arch"),
    ):
        r = client.request(method, path, json={"title": "x"} if method == "PATCH" else None)
        assert r.status_code == 422, (method, path, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    r = client.post("/v1/chat", json={"message": "when do buses leave?", "conversation_id": "ab\u0000c"})
    assert r.status_code == 422 and "conversation_id" in r.text, r.text
    assert client.get(f"/v1/documents/{doc['id']}").json()["title"] == "shuttle"


def test_text_with_a_nul_character_is_400_on_both_backends_and_nothing_is_stored(client):
    """Postgres cannot store U+0000 (SQLite can): both backends refuse it the same way, saying what to do."""
    before = client.get("/v1/documents").json()["items"]
    for body in (
        {"text": "Shuttle buses leave at 08:10.", "title": "bus\u0000times"},
        {"text": "Shuttle buses leave at 08:10.", "metadata": {"dept": "fac\u0000ilities"}},
        {"text": "Shuttle buses leave at 08:10.", "external_id": "bus\u0000"},
    ):
        r = client.post("/v1/documents", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM) and "U+0000" in r.json()["detail"]
    r = client.post("/v1/keys", json={"name": "ci\u0000bot", "scopes": ["read"]})
    assert r.status_code == 400 and "U+0000" in r.json()["detail"], r.text
    assert client.get("/v1/documents").json()["items"] == before
    assert all("\u0000" not in k["name"] for k in client.get("/v1/keys").json()["items"])


def test_a_nul_inside_a_documents_text_is_dropped_not_stored(client):
    """In the text (not the title or metadata) a NUL is noise, as in a text file with one past its first 8 KiB (a
    NUL there would make it a binary file): it goes, and the document is stored and found."""
    filler = "Bus timetable notes. " * 500  # over 8 KiB before the NUL
    uploads = [
        client.post("/v1/documents", json={"text": "Shuttle buses\u0000 leave at 08:10.", "title": "json"}),
        client.post(
            "/v1/documents", files={"file": ("bus.txt", f"{filler}\n\nShuttle\x00 vans leave at 09:20.".encode())}
        ),
    ]
    for r in uploads:
        assert r.status_code == 201, r.text
        chunks = client.get(f"/v1/documents/{r.json()['id']}/chunks").json()["items"]
        assert chunks and all("\x00" not in c["text"] for c in chunks), chunks
    texts = [c["text"] for r in uploads for c in client.get(f"/v1/documents/{r.json()['id']}/chunks").json()["items"]]
    assert "Shuttle buses leave at 08:10." in texts and any("Shuttle vans leave at 09:20." in t for t in texts)
