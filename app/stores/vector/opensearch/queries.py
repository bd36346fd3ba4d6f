"""Pure functions that build OpenSearch request bodies and read its answers: no client, no network, so they are
unit-tested without a server. Filters, access control included, go inside each query (a ``bool`` filter, or the
``knn`` clause's own filter for Lucene efficient filtering), so ``limit`` results are all visible ones."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.errors import BadInput
from app.stores.vector.base import ChunkFilter, ChunkRecord, SourcePosition
from app.stores.vector.embedded import METADATA_KEY

PAGE = 1000
MAX_WINDOW = 10_000  # index.max_result_window and the k-NN plugin's largest k
# Never sent back with hits: only the store's own fields for matching.
HIDDEN = ["vector", "tokens", "context", "metadata_terms", "acl_public"]
# The fewest candidates a vector search asks HNSW for: asked for 1 or 5 it misses near ties that an exact search
# ranks first (recall@10 0.89 with k 10 against 0.98 with k 50, docs/benchmarks.md); the best `limit` are kept.
MIN_K = 50
STAGED = {"term": {"live": False}}


def document(c: ChunkRecord, *, live: bool = True) -> dict[str, Any]:
    """A chunk as it is indexed."""
    return {
        "chunk_id": c.chunk_id,
        "document_id": c.document_id,
        "collection": c.collection,
        "ordinal": c.ordinal,
        "title": c.title,
        "text": c.text,
        "tokens": c.tokens,
        "context": c.context,
        "source": c.source.as_dict(),
        "metadata": c.metadata,
        "metadata_terms": metadata_terms(c.metadata),
        "acl": c.acl,
        "acl_public": not c.acl,
        "vector": np.asarray(c.vector, dtype=np.float32).ravel().tolist(),
        "live": live,
    }


def term(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value, ensure_ascii=False)}"


def metadata_terms(metadata: dict[str, Any]) -> list[str]:
    terms: list[str] = []
    for key, value in metadata.items():
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, dict | list):
                terms.append(term(key, v))
    return terms


def filter_clauses(flt: ChunkFilter) -> list[dict[str, Any]]:
    nothing: list[dict[str, Any]] = [{"match_none": {}}]
    # staged chunks (a new version being indexed) are never served
    clauses: list[dict[str, Any]] = [{"bool": {"must_not": [STAGED]}}]
    if flt.collection is not None:
        clauses.append({"term": {"collection": flt.collection}})
    if flt.collections is not None:
        if not flt.collections:
            return nothing
        clauses.append({"terms": {"collection": list(flt.collections)}})
    if flt.document_ids is not None:
        if not flt.document_ids:
            return nothing
        clauses.append({"terms": {"document_id": list(flt.document_ids)}})
    for key, value in flt.metadata.items():
        if not METADATA_KEY.match(key):
            raise BadInput(f"metadata filter key {key!r} is not allowed: use letters, digits, _ . : -")
        values = value if isinstance(value, list) else [value]
        if not values:
            return nothing
        clauses.append({"terms": {"metadata_terms": [term(key, v) for v in values]}})
    if flt.principals is not None:
        visible: list[dict[str, Any]] = [{"term": {"acl_public": True}}]
        if flt.principals:
            visible.append({"terms": {"acl": list(flt.principals)}})
        clauses.append({"bool": {"should": visible, "minimum_should_match": 1}})
    return clauses


def of_document(document_id: str) -> dict[str, Any]:
    return {"term": {"document_id": document_id}}


def others_of_document(document_id: str, keep: Sequence[str]) -> dict[str, Any]:
    """The document's chunks other than ``keep`` (what a published new version replaces)."""
    return {"bool": {"filter": [of_document(document_id)], "must_not": [{"terms": {"chunk_id": list(keep)}}]}}


def staged(document_id: str | None = None) -> dict[str, Any]:
    query: dict[str, Any] = {"bool": {"filter": [STAGED]}}
    if document_id is not None:
        query["bool"]["filter"].append(of_document(document_id))
    return query


def live(document_id: str | None = None) -> dict[str, Any]:
    query: dict[str, Any] = {"bool": {"must_not": [STAGED]}}
    if document_id is not None:
        query["bool"]["filter"] = [of_document(document_id)]
    return query


def update_fields(
    title: str | None, metadata: dict[str, Any] | None, acl: list[str] | None, set_acl: bool
) -> dict[str, Any]:
    """The fields a document update sets on each of its chunks (empty: nothing to change)."""
    fields: dict[str, Any] = {}
    if title is not None:
        fields["title"] = title
    if metadata is not None:
        fields.update(metadata=metadata, metadata_terms=metadata_terms(metadata))
    if set_acl:
        fields.update(acl=acl or None, acl_public=not acl)
    return fields


def update_script(fields: dict[str, Any]) -> dict[str, Any]:
    """A painless script setting ``fields`` (update-by-query)."""
    source = " ".join(f"ctx._source.{name} = params.{name};" for name in fields)
    return {"lang": "painless", "source": source, "params": fields}


def chunks_page(document_id: str, flt: ChunkFilter, after: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "size": PAGE,
        "track_total_hits": False,
        "_source": {"excludes": HIDDEN},
        "query": {"bool": {"filter": [of_document(document_id), *filter_clauses(flt)]}},
        # chunk_id breaks ordinal ties so search_after pages never skip or repeat a chunk.
        "sort": [{"ordinal": "asc"}, {"chunk_id": "asc"}],
    }
    if after is not None:
        body["search_after"] = after
    return body


def ids_page(query: dict[str, Any], after: list[Any] | None = None) -> dict[str, Any]:
    """One page of the ``_id`` of every chunk matching ``query`` (for deletes and updates without *_by_query)."""
    body: dict[str, Any] = {"size": PAGE, "_source": False, "query": query, "sort": [{"chunk_id": "asc"}]}
    if after is not None:
        body["search_after"] = after
    return body


def chunk_counts_page(after: dict[str, Any] | None = None) -> dict[str, Any]:
    composite: dict[str, Any] = {"size": PAGE, "sources": [{"id": {"terms": {"field": "document_id"}}}]}
    if after is not None:
        composite["after"] = after
    return {"size": 0, "track_total_hits": False, "aggs": {"ids": {"composite": composite}}}


def keyword_query(tokens: list[str], flt: ChunkFilter, limit: int, context_weight: float = 1.0) -> dict[str, Any]:
    # Repeated query tokens would weigh twice; the embedded store matches each once.
    query = " ".join(dict.fromkeys(tokens))
    return {
        "size": min(limit, MAX_WINDOW),
        "track_total_hits": False,
        "_source": {"excludes": HIDDEN},
        "query": {
            "bool": {
                # `must`, not `should`: beside a filter a lone `should` becomes optional and matches everything.
                # most_fields adds the two fields' BM25 scores, the context weighted: what the embedded store's
                # bm25(chunks_fts, 1.0, weight) does
                "must": [
                    {
                        "multi_match": {
                            "query": query,
                            "fields": ["tokens", f"context^{context_weight:g}"],
                            "type": "most_fields",
                            "operator": "or",
                        }
                    }
                ],
                "filter": filter_clauses(flt),
            }
        },
    }


def vector_query(vector: np.ndarray, flt: ChunkFilter, limit: int) -> dict[str, Any]:
    k = min(max(limit, MIN_K), MAX_WINDOW)
    knn: dict[str, Any] = {"vector": np.asarray(vector, dtype=np.float32).ravel().tolist(), "k": k}
    clauses = filter_clauses(flt)
    if clauses:
        # Inside the knn clause Lucene filters while it walks the graph, so k results are all visible ones.
        knn["filter"] = {"bool": {"filter": clauses}}
    return {"size": k, "track_total_hits": False, "_source": {"excludes": HIDDEN}, "query": {"knn": {"vector": knn}}}


def cosine(score: float) -> float:
    """Lucene scores cosine as (1 + cos) / 2; callers threshold on the cosine itself."""
    return 2.0 * float(score) - 1.0


def reason(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type')}: {error.get('reason')}"
    cause = error.get("caused_by")
    return f"{text} (caused by {reason(cause)})" if cause else text


def record(s: dict[str, Any]) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=s["chunk_id"],
        document_id=s["document_id"],
        collection=s["collection"],
        ordinal=int(s["ordinal"]),
        title=s.get("title") or "",
        text=s.get("text") or "",
        source=SourcePosition.from_dict(s.get("source") or {}),
        metadata=s.get("metadata") or {},
        acl=s.get("acl"),
    )
