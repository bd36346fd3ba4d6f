"""The index: its name (alias over a concrete index per model and dimension) and its settings and mapping.

Metadata is kept as given in ``_source`` (not indexed) and filtered through ``metadata_terms``: one keyword
``key=<JSON value>`` per scalar (and per element of a list). Dynamic per-key mappings would let a string
``"1"`` match a number ``1`` and make a key that is a number in one document and text in the next fail to
index; JSON-encoded terms keep the embedded store's typed equality and one field for every key.
"""

from __future__ import annotations

import re
from typing import Any

from app.stores.vector.base import IndexInfo

LAYOUT_VERSION = 1
# Lucene rejects terms above 32766 bytes; longer metadata values are kept but not filterable.
TERM_MAX_CHARS = 4096


def index_name(alias: str, info: IndexInfo) -> str:
    """The concrete index behind ``alias`` for vectors of this model and dimension."""
    slug = re.sub(r"[^a-z0-9]+", "-", info.embedding_model.lower()).strip("-")[:80] or "model"
    return f"{alias}-{slug}-{info.dimension}-v{LAYOUT_VERSION}"


def index_body(info: IndexInfo, *, shards: int | None = 1, replicas: int | None = 0) -> dict[str, Any]:
    """``shards``/``replicas`` None: leave them to the service (OpenSearch Serverless refuses both settings)."""
    keyword = {"type": "keyword"}
    index: dict[str, Any] = {"knn": True}
    if shards is not None:
        index["number_of_shards"] = shards
    if replicas is not None:
        index["number_of_replicas"] = replicas
    return {
        "settings": {"index": index},
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
                "metadata_terms": {"type": "keyword", "ignore_above": TERM_MAX_CHARS},
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


def model_of(mappings: dict[str, Any]) -> IndexInfo | None:
    """What built an index, from its mapping's ``_meta``."""
    for body in mappings.values():
        meta = body.get("mappings", {}).get("_meta") or {}
        if meta.get("embedding_model") is not None:
            return IndexInfo(embedding_model=meta["embedding_model"], dimension=int(meta.get("dimension") or 0))
    return None
