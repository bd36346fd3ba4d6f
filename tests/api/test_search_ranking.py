"""Ranking a user notices (both backends): a chunk found by its document's title and headings, which its own text
never says; at most N chunks of one document when asked; what a lone result scores."""

from __future__ import annotations

import pytest

BODY = """# {title}

## Hotels

Book a standard room within the nightly limit of {limit} dollars. Receipts are required for every night.

## Meals

Meals are paid from the daily allowance. Alcohol is never reimbursed.
"""


@pytest.fixture
def policies(client):
    ids = {}
    for name, limit in (("Quokka", 180), ("Wombat", 140)):
        r = client.post(
            "/v1/documents",
            files={"file": (f"{name.lower()}.md", BODY.format(title=f"{name} travel policy", limit=limit).encode())},
            data={"collection": "travel"},
        )
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_the_title_and_heading_find_a_chunk_that_does_not_name_them(client, policies, mode):
    r = client.post(
        "/v1/search",
        json={"query": "Wombat hotels: what is the nightly limit?", "mode": mode, "top_k": 3, "collection": "travel"},
    )
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["document_id"] == policies["Wombat"]
    assert "140 dollars" in top["text"]
    # the stored text and its offsets are the document's own: the context is indexed, not added to the text
    assert "Wombat" not in top["text"]
    assert top["text"].startswith("Hotels\n\nBook a standard room")
    assert top["source"]["heading_path"] == ["Wombat travel policy", "Hotels"]


def test_per_document_keeps_one_long_document_from_filling_the_results(client):
    long_doc = "\n\n".join(f"## Part {i}\n\nThe backup server copies the vault every {i} hours." for i in range(1, 9))
    r = client.post("/v1/documents", files={"file": ("backup.md", f"# Backups\n\n{long_doc}".encode())})
    assert r.status_code == 201, r.text
    other = client.post("/v1/documents", json={"text": "Vault backups are also copied to tape weekly."}).json()
    query = {"query": "how often is the vault backup copied", "top_k": 4, "mode": "hybrid"}
    everything = client.post("/v1/search", json=query).json()["results"]
    assert [h["document_id"] for h in everything].count(r.json()["id"]) >= 3  # the long document fills the top
    limited = client.post("/v1/search", json={**query, "per_document": 2}).json()["results"]
    docs = [h["document_id"] for h in limited]
    assert docs.count(r.json()["id"]) == 2 and other["id"] in docs and len(limited) == 3
    # its best chunks are kept, in the order they had
    assert [h["chunk_id"] for h in limited if h["document_id"] == r.json()["id"]] == [
        h["chunk_id"] for h in everything if h["document_id"] == r.json()["id"]
    ][:2]
    bad = client.post("/v1/search", json={**query, "per_document": 0})
    assert bad.status_code == 422


def test_a_lone_result_does_not_score_zero(client):
    client.post("/v1/documents", json={"text": "The zyxquorp autoscaler adds nodes when pods are pending."})
    r = client.post("/v1/search", json={"query": "zyxquorp autoscaler", "mode": "hybrid"})
    (only,) = r.json()["results"]
    assert only["score"] == pytest.approx(1.0)
