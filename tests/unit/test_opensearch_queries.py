"""The OpenSearch request bodies, built without a server: what each query matches is decided here."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.errors import BadInput
from app.stores.vector.base import ChunkFilter, IndexInfo
from app.stores.vector.opensearch import queries as q
from app.stores.vector.opensearch.schema import index_body, index_name


def test_filters_carry_access_control_and_typed_metadata():
    clauses = q.filter_clauses(ChunkFilter(collection="hr", metadata={"year": [2025, "2025"]}, principals=["group:hr"]))
    assert {"bool": {"must_not": [q.STAGED]}} in clauses  # staged versions are never served
    assert {"term": {"collection": "hr"}} in clauses
    # a number and a string stay different values
    assert {"terms": {"metadata_terms": ["year=2025", 'year="2025"']}} in clauses
    acl = clauses[-1]["bool"]
    assert acl["minimum_should_match"] == 1
    assert {"terms": {"acl": ["group:hr"]}} in acl["should"] and {"term": {"acl_public": True}} in acl["should"]


def test_empty_allow_lists_match_nothing_and_bad_keys_are_refused():
    assert q.filter_clauses(ChunkFilter(collections=[])) == [{"match_none": {}}]
    assert q.filter_clauses(ChunkFilter(document_ids=[])) == [{"match_none": {}}]
    with pytest.raises(BadInput):
        q.filter_clauses(ChunkFilter(metadata={"bad key!": 1}))


def test_vector_query_filters_inside_knn_and_caps_k():
    body = q.vector_query(np.ones(4, dtype=np.float32), ChunkFilter(collection="c"), 50_000)
    knn = body["query"]["knn"]["vector"]
    assert knn["k"] == q.MAX_WINDOW == body["size"]
    assert {"term": {"collection": "c"}} in knn["filter"]["bool"]["filter"]
    assert q.cosine(1.0) == 1.0 and q.cosine(0.5) == 0.0


def test_keyword_query_counts_each_token_once():
    body = q.keyword_query(["leave", "leave", "paid"], ChunkFilter(), 10, context_weight=2.5)
    match = body["query"]["bool"]["must"][0]["multi_match"]
    assert match["query"] == "leave paid"
    # the chunk's text and its title/heading context add up, the context weighted as the embedded store weighs it
    assert match["fields"] == ["tokens", "context^2.5"] and match["type"] == "most_fields"


def test_vector_query_asks_hnsw_for_enough_candidates():
    body = q.vector_query(np.ones(4, dtype=np.float32), ChunkFilter(), 1)
    assert body["query"]["knn"]["vector"]["k"] == q.MIN_K


def test_update_fields_and_script():
    fields = q.update_fields("T", {"dept": "hr"}, [], True)
    assert fields == {
        "title": "T",
        "metadata": {"dept": "hr"},
        "metadata_terms": ['dept="hr"'],
        "acl": None,
        "acl_public": True,
    }
    assert q.update_fields(None, None, None, False) == {}
    script = q.update_script({"live": True})
    assert script["source"] == "ctx._source.live = params.live;" and script["params"] == {"live": True}


def test_index_body_leaves_shards_to_serverless():
    info = IndexInfo(embedding_model="multilingual-e5-small-q4", dimension=384)
    assert index_name("kb", info) == "kb-multilingual-e5-small-q4-384-v1"
    assert index_body(info, shards=3, replicas=1)["settings"]["index"] == {
        "knn": True,
        "number_of_shards": 3,
        "number_of_replicas": 1,
    }
    assert index_body(info, shards=None, replicas=None)["settings"]["index"] == {"knn": True}
    vector = index_body(info)["mappings"]["properties"]["vector"]
    assert vector["method"]["engine"] == "lucene"


def test_opensearch_url_takes_a_list_of_nodes():
    s = Settings(opensearch_url=" http://a:9200, http://b:9200 ,http://c:9200")
    assert s.opensearch_urls == ["http://a:9200", "http://b:9200", "http://c:9200"]
    for bad in ("a:9200", "http://a:9200,https://b:9200", ","):
        with pytest.raises(ValidationError):
            Settings(opensearch_url=bad)
