"""The chunk store protocol: chunk text + vector + metadata; keyword and vector retrieval; delete by document.

Both backends (embedded SQLite/numpy and OpenSearch) implement it. Filters, including access control,
are applied inside each backend's query so that ``limit`` results are all visible ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from app.core.sentinel import UNSET, Unset

__all__ = ["UNSET", "Unset"]  # the stores' callers pass UNSET for "not given" (defined in app.core.sentinel)


@dataclass(slots=True)
class SourcePosition:
    """Where a chunk came from in its document."""

    char_start: int
    char_end: int
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "char_start": self.char_start,
            "char_end": self.char_end,
            "page": self.page,
            "heading_path": list(self.heading_path),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourcePosition:
        return cls(
            char_start=int(d.get("char_start", 0)),
            char_end=int(d.get("char_end", 0)),
            page=d.get("page"),
            heading_path=list(d.get("heading_path") or []),
        )


@dataclass(slots=True)
class ChunkRecord:
    chunk_id: str
    document_id: str
    collection: str
    ordinal: int
    title: str
    text: str
    source: SourcePosition
    metadata: dict[str, Any] = field(default_factory=dict)
    # Principals allowed to read; None means everyone who can read the collection.
    acl: list[str] | None = None
    # Analyzed keyword tokens (see app.text.analysis), space separated.
    tokens: str = ""
    # Analyzed tokens of the chunk's title and heading path (app.text.context), a BM25 field of its own.
    context: str = ""
    vector: np.ndarray | None = None


@dataclass(slots=True)
class ChunkFilter:
    """Restricts retrieval; every backend applies it inside its query."""

    collection: str | None = None
    # The caller's allowed collections (a key limited to some); None: every collection.
    collections: list[str] | None = None
    # key -> scalar (equals) or list of scalars (any of)
    metadata: dict[str, Any] = field(default_factory=dict)
    document_ids: list[str] | None = None
    # None: no document-level restriction (admin). Otherwise the request's principals: a chunk is visible
    # when its acl is empty/None or shares a principal with this list.
    principals: list[str] | None = None


@dataclass(slots=True)
class Hit:
    chunk: ChunkRecord
    score: float


@dataclass(slots=True)
class IndexInfo:
    """What built the index: vectors from different models must never be mixed."""

    embedding_model: str
    dimension: int


class ChunkStore(Protocol):
    def ensure_ready(self, info: IndexInfo) -> None:
        """Create the index if needed; refuse (ConfigurationError) when it was built by another embedder."""

    def add(self, chunks: Sequence[ChunkRecord], *, live: bool = True) -> None:
        """Insert or replace chunks (idempotent by chunk_id); searchable when this returns, unless ``live`` is
        False: then they are staged, invisible to every read until ``publish``."""

    def publish(self, document_id: str, chunk_ids: Sequence[str]) -> None:
        """Make these staged chunks of the document live and remove its other chunks (an atomic swap on the
        embedded store; on OpenSearch both versions may be seen together for a moment, never neither)."""

    def delete_staged(self, document_id: str | None = None) -> int:
        """Remove staged chunks (of one document, or all) that were never published."""

    def delete_document(self, document_id: str) -> int:
        """Remove every chunk of a document; returns how many were removed."""

    def update_document(
        self,
        document_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        acl: list[str] | None | Unset = UNSET,
    ) -> int:
        """Change fields every chunk of a document carries (None / UNSET: leave as is); returns chunks changed."""

    def count(self, document_id: str | None = None) -> int: ...

    def get_chunks(self, document_id: str, flt: ChunkFilter | None = None) -> list[ChunkRecord]:
        """The document's chunks in order (without vectors)."""

    def keyword_search(self, tokens: list[str], flt: ChunkFilter, limit: int) -> list[Hit]:
        """BM25 over analyzed tokens (the text field plus the context field, weighted); higher is better."""

    def vector_search(self, vector: np.ndarray, flt: ChunkFilter, limit: int) -> list[Hit]:
        """Cosine similarity over normalized vectors; higher is better."""

    def document_ids(self) -> set[str]:
        """Every document id that has chunks (for consistency checks)."""

    def chunk_counts(self) -> dict[str, int]:
        """Chunks per document id, for every document that has any."""

    def ping(self) -> str | None:
        """Raise StoreUnavailable when the store cannot serve; a note ("degraded: ...") when it serves with less
        redundancy than configured (an OpenSearch index whose replicas are not all assigned)."""

    def close(self) -> None: ...
