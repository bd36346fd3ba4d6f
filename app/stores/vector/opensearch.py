"""OpenSearch chunk store: BM25 over pre-analyzed tokens and Lucene HNSW (cosine) vectors in one index.

The configured index name is an alias over a concrete index named after the embedding model and dimension,
so a re-index can build the next index beside it and swap the alias. Filters, access control included, go
inside each query (a ``bool`` filter, or the ``knn`` clause's own filter for Lucene efficient filtering), so
``limit`` results are all visible ones.

Metadata is kept as given in ``_source`` (not indexed) and filtered through ``metadata_terms``: one keyword
``key=<JSON value>`` per scalar (and per element of a list). Dynamic per-key mappings would let a string
``"1"`` match a number ``1`` and make a key that is a number in one document and text in the next fail to
index; JSON-encoded terms keep the embedded store's typed equality and one field for every key.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as TransportConnectionError
from opensearchpy.exceptions import RequestError, TransportError

from app.core.errors import BadInput, ConfigurationError, StoreUnavailable
from app.stores.vector.base import UNSET, ChunkFilter, ChunkRecord, Hit, IndexInfo, SourcePosition, Unset
from app.stores.vector.embedded import METADATA_KEY

if TYPE_CHECKING:
    from app.core.config import Settings

LAYOUT_VERSION = 1
_BULK_DOCS = 500
_BULK_BYTES = 5 * 1024 * 1024
_PAGE = 1000
_MAX_WINDOW = 10_000  # index.max_result_window and the k-NN plugin's largest k
_MIN_K = 50  # the fewest candidates a vector search asks HNSW for (hybrid search asks 50 anyway)
_HIDDEN = ["vector", "tokens", "context", "metadata_terms", "acl_public"]
# Lucene rejects terms above 32766 bytes; longer metadata values are kept but not filterable.
_TERM_MAX_CHARS = 4096


def index_name(alias: str, info: IndexInfo) -> str:
    """The concrete index behind ``alias`` for vectors of this model and dimension."""
    slug = re.sub(r"[^a-z0-9]+", "-", info.embedding_model.lower()).strip("-")[:80] or "model"
    return f"{alias}-{slug}-{info.dimension}-v{LAYOUT_VERSION}"


def index_body(info: IndexInfo, *, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "settings": {"index": {"knn": True, "number_of_shards": shards, "number_of_replicas": replicas}},
        "mappings": {
            "dynamic": "strict",
            "_meta": {"embedding_model": info.embedding_model, "dimension": info.dimension, "layout": LAYOUT_VERSION},
            "properties": {
                "chunk_id": keyword,
                "document_id": keyword,
                "collection": keyword,
                "ordinal": {"type": "integer"},
                "title": {"type": "text", "index": False},
                "text": {"type": "text", "index": False},
                # Already analyzed in Python (app.text.analysis): split on spaces only, score with BM25.
                "tokens": {"type": "text", "analyzer": "whitespace"},
                # the analyzed title and heading path (app.text.context), weighted at query time
                "context": {"type": "text", "analyzer": "whitespace"},
                "source": {"type": "object", "enabled": False},
                "metadata": {"type": "object", "enabled": False},
                "metadata_terms": {"type": "keyword", "ignore_above": _TERM_MAX_CHARS},
                "acl": keyword,
                "acl_public": {"type": "boolean"},
                # false while a new version of a document is staged; absent (older chunks) counts as live
                "live": {"type": "boolean"},
                "vector": {
                    "type": "knn_vector",
                    "dimension": info.dimension,
                    # Only the Lucene engine: the node has no native faiss/nmslib libraries.
                    "method": {
                        "name": "hnsw",
                        "engine": "lucene",
                        "space_type": "cosinesimil",
                        "parameters": {"m": 16, "ef_construction": 128},
                    },
                },
            },
        },
    }


class OpenSearchChunkStore:
    def __init__(
        self, client: OpenSearch, alias: str, *, shards: int = 1, replicas: int = 0, context_weight: float = 1.0
    ) -> None:
        self._client = client
        self._alias = alias
        self._context_weight = float(context_weight)
        self._shards = shards
        self._replicas = replicas

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenSearchChunkStore:
        auth = None
        if settings.opensearch_username:
            password = settings.opensearch_password.get_secret_value() if settings.opensearch_password else ""
            auth = (settings.opensearch_username, password)
        client = OpenSearch(
            hosts=[settings.opensearch_url],
            http_auth=auth,
            verify_certs=settings.opensearch_verify_certs,
            ssl_show_warn=settings.opensearch_verify_certs,
            timeout=settings.opensearch_timeout_s,
            http_compress=True,
            max_retries=2,
            retry_on_timeout=True,
        )
        return cls(
            client,
            settings.opensearch_index,
            shards=settings.opensearch_shards,
            replicas=settings.opensearch_replicas,
            context_weight=settings.keyword_context_weight,
        )

    # --- lifecycle -------------------------------------------------------------------------------
    def ensure_ready(self, info: IndexInfo) -> None:
        concrete = index_name(self._alias, info)
        with self._translate("ensure_ready"):
            if not self._client.indices.exists(index=self._alias):
                body = index_body(info, shards=self._shards, replicas=self._replicas)
                body["aliases"] = {self._alias: {}}
                try:
                    self._client.indices.create(index=concrete, body=body)
                except RequestError as exc:
                    if exc.error != "resource_already_exists_exception":
                        raise ConfigurationError(f"cannot create OpenSearch index {concrete!r}: {exc}") from exc
                    # Another process won the race, or a half-finished re-index left it: point the alias at it.
                    self._client.indices.put_alias(index=concrete, name=self._alias)
            mappings = self._client.indices.get_mapping(index=self._alias)
            # indices made before staged updates, or chunk context, existed get the fields (adding a field is
            # allowed in place; `knowledge-search reindex` fills the context of older chunks)
            self._client.indices.put_mapping(
                index=self._alias,
                body={
                    "properties": {
                        "live": {"type": "boolean"},
                        "context": {"type": "text", "analyzer": "whitespace"},
                    }
                },
            )
        for name, body in mappings.items():
            meta = body.get("mappings", {}).get("_meta") or {}
            model, dim = meta.get("embedding_model"), meta.get("dimension")
            if model != info.embedding_model or dim != info.dimension:
                raise ConfigurationError(
                    f"The OpenSearch index {self._alias!r} (index {name!r}) was built with embedding model "
                    f"{model!r} (dimension {dim}), but the service is configured for {info.embedding_model!r} "
                    f"(dimension {info.dimension}). Vectors from different models cannot be mixed: "
                    "set KS_EMBEDDING_MODEL back, or rebuild the index with `knowledge-search reindex`."
                )

    # --- re-index (app.ingest.reindex) ----------------------------------------------------------
    @property
    def name(self) -> str:
        """The alias (for a re-index target, the concrete index) this store reads and writes."""
        return self._alias

    def indices(self) -> list[str]:
        """The concrete indices behind the alias; empty when it does not exist yet."""
        with self._translate("indices"):
            if not self._client.indices.exists_alias(name=self._alias):
                return []
            return sorted(self._client.indices.get_alias(name=self._alias))

    def index_info(self) -> IndexInfo | None:
        """What built the index behind the alias (its ``_meta``), without the model check."""
        with self._translate("index_info"):
            if not self._client.indices.exists(index=self._alias):
                return None
            mappings = self._client.indices.get_mapping(index=self._alias)
        for body in mappings.values():
            meta = body.get("mappings", {}).get("_meta") or {}
            if meta.get("embedding_model") is not None:
                return IndexInfo(embedding_model=meta["embedding_model"], dimension=int(meta.get("dimension") or 0))
        return None

    def create_reindex_target(self, info: IndexInfo) -> OpenSearchChunkStore:
        """A new concrete index for ``info``, not behind the alias yet, and a store that writes to it."""
        name = index_name(self._alias, info)
        with self._translate("create_reindex_target"):
            if self._client.indices.exists(index=name):
                # The same model again, or an index kept by --keep-old: never reuse it, take a new name.
                name = f"{name}-r{time.strftime('%Y%m%d%H%M%S')}"
            body = index_body(info, shards=self._shards, replicas=self._replicas)
            self._client.indices.create(index=name, body=body)
        return OpenSearchChunkStore(
            self._client, name, shards=self._shards, replicas=self._replicas, context_weight=self._context_weight
        )

    def move_alias(self, target: OpenSearchChunkStore, *, delete_old: bool) -> list[str]:
        """Point the alias at ``target``'s index in one atomic ``_aliases`` call; returns the indices it left."""
        old = self.indices()
        actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": self._alias}} for i in old]
        actions.append({"add": {"index": target.name, "alias": self._alias}})
        with self._translate("move_alias"):
            self._client.indices.update_aliases(body={"actions": actions})
            if delete_old and old:
                self._client.indices.delete(index=",".join(old))
        return old

    def drop(self) -> None:
        """Delete the concrete index this store writes to (an unfinished re-index target)."""
        with self._translate("drop"):
            self._client.indices.delete(index=self._alias, ignore_unavailable=True)

    def ping(self) -> None:
        with self._translate("ping"):
            health = self._client.cluster.health()
        if health.get("status") == "red":
            raise StoreUnavailable("OpenSearch cluster health is red")

    def close(self) -> None:
        self._client.close()

    # --- writes ----------------------------------------------------------------------------------
    def add(self, chunks: Sequence[ChunkRecord], *, live: bool = True) -> None:
        if not chunks:
            return
        for c in chunks:
            if c.vector is None:
                raise ValueError(f"chunk {c.chunk_id} has no vector")
        actions = (
            {"_op_type": "index", "_index": self._alias, "_id": c.chunk_id, "_source": {**_document(c), "live": live}}
            for c in chunks
        )
        with self._translate("add"):
            _, errors = helpers.bulk(
                self._client,
                actions,
                chunk_size=_BULK_DOCS,
                max_chunk_bytes=_BULK_BYTES,
                raise_on_error=False,
                stats_only=False,
            )
            self._client.indices.refresh(index=self._alias)
        if errors:
            first = next(iter(errors[0].values()))
            raise StoreUnavailable(
                f"OpenSearch rejected {len(errors)} of {len(chunks)} chunks; "
                f"first ({first.get('_id')}): {_reason(first.get('error', first))}",
                extra={"failed": len(errors)},
            )

    def delete_document(self, document_id: str) -> int:
        with self._translate("delete_document"):
            res = self._client.delete_by_query(
                index=self._alias,
                body={"query": {"term": {"document_id": document_id}}},
                refresh=True,
                conflicts="proceed",
            )
        if res.get("failures"):
            raise StoreUnavailable(f"OpenSearch could not delete every chunk of {document_id}: {res['failures'][0]}")
        return int(res.get("deleted", 0))

    def update_document(
        self,
        document_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        acl: list[str] | None | Unset = UNSET,
    ) -> int:
        params: dict[str, Any] = {}
        lines = []
        if title is not None:
            params["title"] = title
            lines.append("ctx._source.title = params.title;")
        if metadata is not None:
            params.update(metadata=metadata, metadata_terms=_metadata_terms(metadata))
            lines.append("ctx._source.metadata = params.metadata; ctx._source.metadata_terms = params.metadata_terms;")
        if not isinstance(acl, Unset):
            params.update(acl=acl or None, acl_public=not acl)
            lines.append("ctx._source.acl = params.acl; ctx._source.acl_public = params.acl_public;")
        if not lines:
            return 0
        with self._translate("update_document"):
            res = self._client.update_by_query(
                index=self._alias,
                body={
                    "query": {"term": {"document_id": document_id}},
                    "script": {"lang": "painless", "source": " ".join(lines), "params": params},
                },
                refresh=True,
                conflicts="proceed",
            )
        if res.get("failures"):
            raise StoreUnavailable(f"OpenSearch could not update every chunk of {document_id}: {res['failures'][0]}")
        return int(res.get("updated", 0))

    # --- reads -----------------------------------------------------------------------------------
    def publish(self, document_id: str, chunk_ids: Sequence[str]) -> None:
        """Make the staged chunks live, then drop the document's others. Between the two calls a search may see
        both versions for a moment (never neither)."""
        ids = list(chunk_ids)
        with self._translate("publish"):
            for i in range(0, len(ids), _PAGE):
                self._client.update_by_query(
                    index=self._alias,
                    body={
                        "query": {
                            "bool": {
                                "filter": [
                                    {"term": {"document_id": document_id}},
                                    {"terms": {"chunk_id": ids[i : i + _PAGE]}},
                                ]
                            }
                        },
                        "script": {"lang": "painless", "source": "ctx._source.live = true"},
                    },
                    refresh=True,
                    conflicts="proceed",
                )
            self._client.delete_by_query(
                index=self._alias,
                body={
                    "query": {
                        "bool": {
                            "filter": [{"term": {"document_id": document_id}}],
                            "must_not": [{"terms": {"chunk_id": ids}}],
                        }
                    }
                },
                refresh=True,
                conflicts="proceed",
            )

    def delete_staged(self, document_id: str | None = None) -> int:
        query: dict[str, Any] = {"bool": {"filter": [{"term": {"live": False}}]}}
        if document_id is not None:
            query["bool"]["filter"].append({"term": {"document_id": document_id}})
        with self._translate("delete_staged"):
            res = self._client.delete_by_query(
                index=self._alias, body={"query": query}, refresh=True, conflicts="proceed"
            )
        return int(res.get("deleted", 0))

    def count(self, document_id: str | None = None) -> int:
        live = {"bool": {"must_not": [_STAGED]}}
        query = (
            {"bool": {"filter": [{"term": {"document_id": document_id}}], **live["bool"]}}
            if document_id is not None
            else live
        )
        with self._translate("count"):
            return int(self._client.count(index=self._alias, body={"query": query})["count"])

    def document_ids(self) -> set[str]:
        return set(self.chunk_counts())

    def chunk_counts(self) -> dict[str, int]:
        composite: dict[str, Any] = {"size": _PAGE, "sources": [{"id": {"terms": {"field": "document_id"}}}]}
        body = {"size": 0, "track_total_hits": False, "aggs": {"ids": {"composite": composite}}}
        counts: dict[str, int] = {}
        with self._translate("chunk_counts"):
            while True:
                agg = self._client.search(index=self._alias, body=body)["aggregations"]["ids"]
                counts.update((b["key"]["id"], int(b["doc_count"])) for b in agg["buckets"])
                if len(agg["buckets"]) < _PAGE or "after_key" not in agg:
                    return counts
                composite["after"] = agg["after_key"]

    def get_chunks(self, document_id: str, flt: ChunkFilter | None = None) -> list[ChunkRecord]:
        clauses = [{"term": {"document_id": document_id}}, *_filter_clauses(flt or ChunkFilter())]
        body: dict[str, Any] = {
            "size": _PAGE,
            "track_total_hits": False,
            "_source": {"excludes": _HIDDEN},
            "query": {"bool": {"filter": clauses}},
            # chunk_id breaks ordinal ties so search_after pages never skip or repeat a chunk.
            "sort": [{"ordinal": "asc"}, {"chunk_id": "asc"}],
        }
        out: list[ChunkRecord] = []
        with self._translate("get_chunks"):
            while True:
                hits = self._client.search(index=self._alias, body=body)["hits"]["hits"]
                out.extend(_record(h["_source"]) for h in hits)
                if len(hits) < _PAGE:
                    return out
                body["search_after"] = hits[-1]["sort"]

    def keyword_search(self, tokens: list[str], flt: ChunkFilter, limit: int) -> list[Hit]:
        if not tokens or limit <= 0:
            return []
        # Repeated query tokens would weigh twice; the embedded store matches each once.
        query = " ".join(dict.fromkeys(tokens))
        body = {
            "size": min(limit, _MAX_WINDOW),
            "track_total_hits": False,
            "_source": {"excludes": _HIDDEN},
            "query": {
                "bool": {
                    # `must`, not `should`: beside a filter a lone `should` becomes optional and matches everything.
                    # most_fields adds the two fields' BM25 scores, context weighted: what the embedded store's
                    # bm25(chunks_fts, 1.0, weight) does
                    "must": [
                        {
                            "multi_match": {
                                "query": query,
                                "fields": ["tokens", f"context^{self._context_weight:g}"],
                                "type": "most_fields",
                                "operator": "or",
                            }
                        }
                    ],
                    "filter": _filter_clauses(flt),
                }
            },
        }
        with self._translate("keyword_search"):
            hits = self._client.search(index=self._alias, body=body)["hits"]["hits"]
        return [Hit(_record(h["_source"]), float(h["_score"])) for h in hits]

    def vector_search(self, vector: np.ndarray, flt: ChunkFilter, limit: int) -> list[Hit]:
        if limit <= 0:
            return []
        # HNSW explores about k nodes: asked for 1 or 5 it misses near ties that an exact search ranks first
        # (recall@10 0.89 with k 10 against 0.98 with k 50, docs/benchmarks.md), so it is asked for at least
        # _MIN_K and the best `limit` are kept.
        k = min(max(limit, _MIN_K), _MAX_WINDOW)
        knn: dict[str, Any] = {"vector": np.asarray(vector, dtype=np.float32).ravel().tolist(), "k": k}
        clauses = _filter_clauses(flt)
        if clauses:
            # Inside the knn clause Lucene filters while it walks the graph, so k results are all visible ones.
            knn["filter"] = {"bool": {"filter": clauses}}
        body = {
            "size": k,
            "track_total_hits": False,
            "_source": {"excludes": _HIDDEN},
            "query": {"knn": {"vector": knn}},
        }
        with self._translate("vector_search"):
            hits = self._client.search(index=self._alias, body=body)["hits"]["hits"]
        # Lucene scores cosine as (1 + cos) / 2; callers threshold on the cosine itself.
        return [Hit(_record(h["_source"]), 2.0 * float(h["_score"]) - 1.0) for h in hits[:limit]]

    # --- helpers ---------------------------------------------------------------------------------
    @contextmanager
    def _translate(self, operation: str) -> Iterator[None]:
        """OpenSearch transport errors become StoreUnavailable at this edge."""
        try:
            yield
        except TransportConnectionError as exc:
            raise StoreUnavailable(f"OpenSearch did not answer ({operation} on {self._alias!r}): {exc}") from exc
        except TransportError as exc:
            raise StoreUnavailable(f"OpenSearch refused {operation} on {self._alias!r}: {exc}") from exc


def _document(c: ChunkRecord) -> dict[str, Any]:
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
        "metadata_terms": _metadata_terms(c.metadata),
        "acl": c.acl,
        "acl_public": not c.acl,
        "vector": np.asarray(c.vector, dtype=np.float32).ravel().tolist(),
    }


def _term(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value, ensure_ascii=False)}"


def _metadata_terms(metadata: dict[str, Any]) -> list[str]:
    terms: list[str] = []
    for key, value in metadata.items():
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, dict | list):
                terms.append(_term(key, v))
    return terms


_STAGED = {"term": {"live": False}}


def _filter_clauses(flt: ChunkFilter) -> list[dict[str, Any]]:
    nothing: list[dict[str, Any]] = [{"match_none": {}}]
    # staged chunks (a new version being indexed) are never served
    clauses: list[dict[str, Any]] = [{"bool": {"must_not": [_STAGED]}}]
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
        clauses.append({"terms": {"metadata_terms": [_term(key, v) for v in values]}})
    if flt.principals is not None:
        visible: list[dict[str, Any]] = [{"term": {"acl_public": True}}]
        if flt.principals:
            visible.append({"terms": {"acl": list(flt.principals)}})
        clauses.append({"bool": {"should": visible, "minimum_should_match": 1}})
    return clauses


def _reason(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type')}: {error.get('reason')}"
    cause = error.get("caused_by")
    return f"{text} (caused by {_reason(cause)})" if cause else text


def _record(s: dict[str, Any]) -> ChunkRecord:
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
