"""OpenSearch chunk store: BM25 over pre-analyzed tokens and Lucene HNSW (cosine) vectors in one index.

The configured index name is an alias over a concrete index named after the embedding model and dimension
(``indices.py``), so a re-index can build the next index beside it and swap the alias. Request bodies come from
the pure builders of ``queries.py``; this class sends them and turns transport errors into StoreUnavailable.

OpenSearch Serverless (``serverless=True``) lacks some APIs this store uses elsewhere; there it copes:
no ``refresh`` (a write is searchable after the collection's own refresh, about ten seconds), and no
``_delete_by_query`` / ``_update_by_query`` (the matching ids are read page by page and deleted or updated with
``_bulk``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as TransportConnectionError
from opensearchpy.exceptions import SSLError, TransportError

from app.core.errors import StoreUnavailable
from app.stores.vector.base import UNSET, ChunkFilter, ChunkRecord, Hit, IndexInfo, Unset
from app.stores.vector.opensearch import queries as q
from app.stores.vector.opensearch.client import build_client
from app.stores.vector.opensearch.indices import Indices

if TYPE_CHECKING:
    from app.core.config import Settings

_BULK_DOCS = 500
_BULK_BYTES = 5 * 1024 * 1024


class OpenSearchChunkStore:
    def __init__(
        self,
        client: OpenSearch,
        alias: str,
        *,
        shards: int = 1,
        replicas: int = 0,
        serverless: bool = False,
        context_weight: float = 1.0,
    ) -> None:
        self._client = client
        self._context_weight = float(context_weight)
        self._alias = alias
        self._serverless = serverless
        self._indices = Indices(client, alias, shards=shards, replicas=replicas, serverless=serverless)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenSearchChunkStore:
        return cls(
            build_client(settings),
            settings.opensearch_index,
            shards=settings.opensearch_shards,
            replicas=settings.opensearch_replicas,
            serverless=settings.opensearch_auth == "sigv4" and settings.opensearch_aws_service == "aoss",
            context_weight=settings.keyword_context_weight,
        )

    # --- lifecycle -------------------------------------------------------------------------------
    def ensure_ready(self, info: IndexInfo) -> None:
        with self._translate("ensure_ready"):
            self._indices.ensure(info)

    @property
    def name(self) -> str:
        """The alias (for a re-index target, the concrete index) this store reads and writes."""
        return self._alias

    def indices(self) -> list[str]:
        with self._translate("indices"):
            return self._indices.concrete()

    def index_info(self) -> IndexInfo | None:
        """What built the index behind the alias (its ``_meta``), without the model check."""
        with self._translate("index_info"):
            return self._indices.info()

    def create_reindex_target(self, info: IndexInfo) -> OpenSearchChunkStore:
        """A new concrete index for ``info``, not behind the alias yet, and a store that writes to it."""
        with self._translate("create_reindex_target"):
            name = self._indices.create_target(info)
        return OpenSearchChunkStore(
            self._client,
            name,
            shards=self._indices._shards,
            replicas=self._indices._replicas,
            serverless=self._serverless,
            context_weight=self._context_weight,
        )

    def move_alias(self, target: OpenSearchChunkStore, *, delete_old: bool) -> list[str]:
        with self._translate("move_alias"):
            return self._indices.move_alias(target.name, delete_old=delete_old)

    def drop(self) -> None:
        """Delete the concrete index this store writes to (an unfinished re-index target)."""
        with self._translate("drop"):
            self._indices.drop()

    def ping(self) -> str | None:
        with self._translate("ping"):
            return self._indices.health()

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
            {"_op_type": "index", "_index": self._alias, "_id": c.chunk_id, "_source": q.document(c, live=live)}
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
            self._refresh()
        if errors:
            first = next(iter(errors[0].values()))
            raise StoreUnavailable(
                f"OpenSearch rejected {len(errors)} of {len(chunks)} chunks; "
                f"first ({first.get('_id')}): {q.reason(first.get('error', first))}",
                extra={"failed": len(errors)},
            )

    def delete_document(self, document_id: str) -> int:
        with self._translate("delete_document"):
            return self._delete_where(q.of_document(document_id), document_id)

    def update_document(
        self,
        document_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        acl: list[str] | None | Unset = UNSET,
    ) -> int:
        fields = q.update_fields(title, metadata, None if isinstance(acl, Unset) else acl, not isinstance(acl, Unset))
        if not fields:
            return 0
        with self._translate("update_document"):
            return self._update_where(q.of_document(document_id), fields, document_id)

    def publish(self, document_id: str, chunk_ids: Sequence[str]) -> None:
        """Make the staged chunks live, then drop the document's others. Between the two calls a search may see
        both versions for a moment (never neither)."""
        ids = list(chunk_ids)
        with self._translate("publish"):
            if self._serverless:
                # staged chunks may not be searchable yet (no refresh there): set them live by id
                actions = ({"_op_type": "update", "_index": self._alias, "_id": i, "doc": {"live": True}} for i in ids)
                _, errors = helpers.bulk(self._client, actions, raise_on_error=False, stats_only=False)
                if errors:
                    raise StoreUnavailable(f"OpenSearch could not publish every chunk of {document_id}: {errors[0]}")
                self._delete_where(q.others_of_document(document_id, ids), document_id)
                return
            for i in range(0, len(ids), q.PAGE):
                query = {"bool": {"filter": [q.of_document(document_id), {"terms": {"chunk_id": ids[i : i + q.PAGE]}}]}}
                self._update_where(query, {"live": True}, document_id)
            self._delete_where(q.others_of_document(document_id, ids), document_id)

    def delete_staged(self, document_id: str | None = None) -> int:
        with self._translate("delete_staged"):
            return self._delete_where(q.staged(document_id), document_id or "staged chunks")

    # --- reads -----------------------------------------------------------------------------------
    def count(self, document_id: str | None = None) -> int:
        with self._translate("count"):
            return int(self._client.count(index=self._alias, body={"query": q.live(document_id)})["count"])

    def document_ids(self) -> set[str]:
        return set(self.chunk_counts())

    def chunk_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        after = None
        with self._translate("chunk_counts"):
            while True:
                agg = self._client.search(index=self._alias, body=q.chunk_counts_page(after))["aggregations"]["ids"]
                counts.update((b["key"]["id"], int(b["doc_count"])) for b in agg["buckets"])
                if len(agg["buckets"]) < q.PAGE or "after_key" not in agg:
                    return counts
                after = agg["after_key"]

    def get_chunks(self, document_id: str, flt: ChunkFilter | None = None) -> list[ChunkRecord]:
        out: list[ChunkRecord] = []
        after = None
        with self._translate("get_chunks"):
            while True:
                body = q.chunks_page(document_id, flt or ChunkFilter(), after)
                hits = self._client.search(index=self._alias, body=body)["hits"]["hits"]
                out.extend(q.record(h["_source"]) for h in hits)
                if len(hits) < q.PAGE:
                    return out
                after = hits[-1]["sort"]

    def keyword_search(self, tokens: list[str], flt: ChunkFilter, limit: int) -> list[Hit]:
        if not tokens or limit <= 0:
            return []
        with self._translate("keyword_search"):
            hits = self._client.search(
                index=self._alias, body=q.keyword_query(tokens, flt, limit, self._context_weight)
            )["hits"]["hits"]
        return [Hit(q.record(h["_source"]), float(h["_score"])) for h in hits]

    def vector_search(self, vector: np.ndarray, flt: ChunkFilter, limit: int) -> list[Hit]:
        if limit <= 0:
            return []
        with self._translate("vector_search"):
            hits = self._client.search(index=self._alias, body=q.vector_query(vector, flt, limit))["hits"]["hits"]
        return [Hit(q.record(h["_source"]), q.cosine(h["_score"])) for h in hits[:limit]]

    # --- helpers ---------------------------------------------------------------------------------
    def _refresh(self) -> None:
        if not self._serverless:  # a collection refreshes by itself and has no _refresh
            self._client.indices.refresh(index=self._alias)

    def _delete_where(self, query: dict[str, Any], what: str) -> int:
        if not self._serverless:
            res = self._client.delete_by_query(
                index=self._alias, body={"query": query}, refresh=True, conflicts="proceed"
            )
            if res.get("failures"):
                raise StoreUnavailable(f"OpenSearch could not delete every chunk of {what}: {res['failures'][0]}")
            return int(res.get("deleted", 0))
        return self._bulk_by_ids(query, lambda _id: {"_op_type": "delete", "_index": self._alias, "_id": _id}, what)

    def _update_where(self, query: dict[str, Any], fields: dict[str, Any], what: str) -> int:
        if not self._serverless:
            res = self._client.update_by_query(
                index=self._alias,
                body={"query": query, "script": q.update_script(fields)},
                refresh=True,
                conflicts="proceed",
            )
            if res.get("failures"):
                raise StoreUnavailable(f"OpenSearch could not update every chunk of {what}: {res['failures'][0]}")
            return int(res.get("updated", 0))
        return self._bulk_by_ids(
            query, lambda _id: {"_op_type": "update", "_index": self._alias, "_id": _id, "doc": fields}, what
        )

    def _bulk_by_ids(self, query: dict[str, Any], action: Any, what: str) -> int:
        """Delete or update every chunk matching ``query`` by id, page by page (no *_by_query on Serverless)."""
        ids: list[str] = []
        after = None
        while True:
            hits = self._client.search(index=self._alias, body=q.ids_page(query, after))["hits"]["hits"]
            ids.extend(h["_id"] for h in hits)
            if len(hits) < q.PAGE:
                break
            after = hits[-1]["sort"]
        if not ids:
            return 0
        done, errors = helpers.bulk(self._client, (action(i) for i in ids), raise_on_error=False, stats_only=False)
        if errors:
            raise StoreUnavailable(f"OpenSearch could not change every chunk of {what}: {errors[0]}")
        return int(done)

    @contextmanager
    def _translate(self, operation: str) -> Iterator[None]:
        """OpenSearch transport errors become StoreUnavailable at this edge."""
        try:
            yield
        except SSLError as exc:
            raise StoreUnavailable(
                f"OpenSearch's TLS certificate was not accepted ({operation} on {self._alias!r}): {exc.info}. If the "
                "cluster's certificate comes from a private CA, set KS_OPENSEARCH_CA_BUNDLE to that CA's PEM file"
            ) from exc
        except TransportConnectionError as exc:
            raise StoreUnavailable(f"OpenSearch did not answer ({operation} on {self._alias!r}): {exc}") from exc
        except TransportError as exc:
            raise StoreUnavailable(f"OpenSearch refused {operation} on {self._alias!r}: {_describe(exc)}") from exc


def _describe(exc: TransportError) -> str:
    """What OpenSearch said, and what to do for the answers a misconfigured client gets (never a credential)."""
    status = exc.status_code
    if status in (401, 403):
        return (
            f"{status} {exc.error}: the cluster did not accept this service's credentials; check "
            "KS_OPENSEARCH_AUTH (and the username/password, or the IAM role and KS_OPENSEARCH_AWS_SERVICE/region)"
        )
    return str(exc)
