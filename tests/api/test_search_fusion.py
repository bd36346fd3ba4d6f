"""Per-request fusion in POST /v1/search (both backends): the weight extremes reproduce one retriever's order."""

from __future__ import annotations

import pytest

from tests.helpers import PROBLEM, upload_text

TEXTS = [
    "Remote work policy: remote work needs a signed remote work agreement.",
    "Employees may work from home up to three days per week with their manager's approval.",
    "The travel policy covers trains and hotels; the policy is reviewed yearly.",
    "在宅勤務は週3日まで認められます。",
    "The cafeteria serves lunch from noon until two.",
]
QUERY = "remote work policy"


@pytest.fixture
def docs(client):
    return [upload_text(client, text, collection="fusion")["id"] for text in TEXTS]


def _ids(client, **body) -> list[str]:
    return [h["document_id"] for h in _search(client, **body)]


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_weight_0_is_keyword_order_and_1_is_semantic_order(client, docs, method):
    keyword, semantic = _ids(client, mode="keyword"), _ids(client, mode="semantic")
    assert keyword and keyword != semantic[: len(keyword)]  # the two retrievers disagree here
    only_keyword = _ids(client, mode="hybrid", fusion={"method": method, "weight_vector": 0.0})
    assert only_keyword[: len(keyword)] == keyword
    assert _ids(client, mode="hybrid", fusion={"method": method, "weight_vector": 1.0}) == semantic


def _search(client, **extra):
    r = client.post("/v1/search", json={"query": QUERY, "collection": "fusion", "top_k": 5, **extra})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_fusion_per_request_changes_the_ranking_and_scores(client, docs):
    default = _search(client)
    zscore = _search(client, fusion={"method": "zscore", "weight_vector": 0.5})
    assert [(h["chunk_id"], h["score"]) for h in zscore] == [(h["chunk_id"], h["score"]) for h in default]
    rrf = _search(client, fusion={"method": "rrf", "k": 60})
    assert max(h["score"] for h in rrf) <= 2 / 61  # RRF scores stay below 2 / (k + 1)
    minmax = _search(client, fusion={"method": "minmax", "weight_vector": 0.5})
    scores = [h["score"] for h in minmax]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] >= 0.5  # the keyword top hit alone brings 0.5
    assert [h["score"] for h in rrf] != scores


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fusion": {"method": "borda"}}, "fusion.method"),
        ({"fusion": {"method": "minmax", "weight_vector": 1.5}}, "weight_vector"),
        ({"fusion": {"method": "rrf", "k": 0}}, "fusion.k"),
        ({"fusion": {"method": "minmax", "k": 60}}, "k applies to rrf only"),
        ({"fusion": {"method": "rrf", "weight_vector": 0.5}}, "weight_vector applies to minmax and zscore"),
        ({"fusion": {"method": "rrf", "extra": 1}}, "extra"),
        ({"fusion": {"k": 60}}, "fusion.method"),
        ({"mode": "keyword", "fusion": {"method": "rrf"}}, "fusion applies to mode 'hybrid' only"),
    ],
)
def test_bad_fusion_is_a_422_problem(client, body, message):
    r = client.post("/v1/search", json={"query": QUERY, **body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert message in r.json()["detail"]
