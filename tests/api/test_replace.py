"""Replacing a document's content: atomic for searches, same id, old version kept on failure (both backends)."""

from __future__ import annotations

import threading

from tests.helpers import PROBLEM, upload_text

OLD = "\n\n".join(f"Old rule {i}: visitors park in the north garage, level B{i % 3 + 1}." for i in range(30))
NEW = "\n\n".join(f"New rule {i}: visitors now park in the south garage, bay {i}." for i in range(30))


def _doc_hits(client, query: str, doc_id: str) -> list[dict]:
    r = client.post("/v1/search", json={"query": query, "top_k": 100, "mode": "keyword"})
    return [h for h in r.json()["results"] if h["document_id"] == doc_id]


def test_put_swaps_content_and_keeps_the_id(client):
    doc = upload_text(client, OLD, title="Parking", metadata={"site": "tokyo"})
    old_chunks = {c["chunk_id"] for c in client.get(f"/v1/documents/{doc['id']}/chunks").json()["items"]}
    r = client.put(f"/v1/documents/{doc['id']}", json={"text": NEW, "title": "Parking (2027)"})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["id"] == doc["id"] and new["title"] == "Parking (2027)" and new["status"] == "indexed"
    assert new["metadata"] == {"site": "tokyo"}  # kept when the upload sends none
    chunks = client.get(f"/v1/documents/{doc['id']}/chunks").json()["items"]
    assert len(chunks) == new["chunk_count"] and not old_chunks & {c["chunk_id"] for c in chunks}
    assert all("south garage" in c["text"] for c in chunks)
    assert _doc_hits(client, "north", doc["id"]) == []
    assert _doc_hits(client, "south", doc["id"])


def test_searches_never_see_the_document_vanish_during_a_replace(client):
    doc = upload_text(client, OLD)
    seen: list[set[str]] = []
    done = threading.Event()

    def replace() -> None:
        try:
            assert client.put(f"/v1/documents/{doc['id']}", json={"text": NEW}).status_code == 200
        finally:
            done.set()

    worker = threading.Thread(target=replace)
    worker.start()
    while not done.is_set():
        hits = _doc_hits(client, "visitors park garage", doc["id"])
        seen.append({"old" if "north" in h["text"] else "new" for h in hits})
    worker.join()
    seen.append(
        {"old" if "north" in h["text"] else "new" for h in _doc_hits(client, "visitors park garage", doc["id"])}
    )
    assert all(kinds for kinds in seen), "a search found nothing of the document while it was being replaced"
    assert seen[0] == {"old"} and seen[-1] == {"new"}
    # the old version is served until the new one is complete (on OpenSearch both may meet for a moment)
    first_new = next(i for i, kinds in enumerate(seen) if "new" in kinds)
    assert all("new" not in kinds for kinds in seen[:first_new])


def test_upload_with_the_same_external_id_replaces(client):
    first = client.post("/v1/documents", json={"text": "Version one of the policy.", "external_id": "policy-7"})
    assert first.status_code == 201
    second = client.post("/v1/documents", json={"text": "Version two of the policy.", "external_id": "policy-7"})
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    texts = [c["text"] for c in client.get(f"/v1/documents/{first.json()['id']}/chunks").json()["items"]]
    assert texts == ["Version two of the policy."]
    assert len(client.get("/v1/documents").json()["items"]) == 1


def test_a_bad_replacement_keeps_the_old_version(client, container):
    doc = upload_text(client, OLD)
    r = client.put(f"/v1/documents/{doc['id']}", files={"file": ("x.pdf", b"%PDF-1.7 broken", "application/pdf")})
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert client.get(f"/v1/documents/{doc['id']}").json()["chunk_count"] == doc["chunk_count"]
    assert _doc_hits(client, "north", doc["id"])
    assert client.put("/v1/documents/0123456789abcdef0123456789abcdef", json={"text": "x"}).status_code == 404
    # Another document may hold the same text: they stay two documents (each keeps its own id and access list).
    twin = upload_text(client, "Some other text entirely.")
    same = client.put(f"/v1/documents/{doc['id']}", json={"text": "Some other text entirely."})
    assert same.status_code == 200 and same.json()["id"] == doc["id"] != twin["id"]
    assert client.get(f"/v1/documents/{twin['id']}").json()["status"] == "indexed"


def test_staged_chunks_left_by_a_crash_are_removed_on_recovery(client, container):
    doc = upload_text(client, OLD)
    from tests.integration.test_chunk_stores import chunk

    vector = container.embedder.embed_query("x")
    container.store.add([chunk(f"{doc['id']}-dead-00000", document_id=doc["id"], vector=vector)], live=False)
    container.ingest.recover()
    chunk_ids = {c["chunk_id"] for c in client.get(f"/v1/documents/{doc['id']}/chunks").json()["items"]}
    assert f"{doc['id']}-dead-00000" not in chunk_ids
    assert container.store.delete_staged() == 0
