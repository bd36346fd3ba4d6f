"""parse → (redact) → chunk → embed → stage: a document's chunks written to the chunk store, not yet searchable.

The document arrives as parts (``parse_parts``: one for a small file, many for a large text file or a PDF), so
memory holds one part and one embedding batch, whatever the file's size. The caller publishes the staged ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.core.errors import Unprocessable
from app.ingest.chunking import ChunkDraft, chunk_document
from app.ingest.parsers import DEFAULT_LIMITS, ParseLimits, parse_parts
from app.ingest.payload import Payload
from app.ingest.redaction import redact_document
from app.providers.base import Embedder
from app.stores.sql.models import Document
from app.stores.vector.base import ChunkRecord, ChunkStore
from app.text.analysis import Analyzer
from app.text.context import index_text

# (chunks staged, total so far estimated, document title); first called with 0 once the title is settled
StageProgress = Callable[[int, int, str], None]


@dataclass(slots=True)
class Target:
    """What the chunks of a document carry, read from its row; title and redactions settle during the run."""

    collection: str
    content_type: str
    title: str
    filename: str | None
    metadata: dict[str, Any]
    acl: list[str] | None
    redact: bool
    redactions: int | None = None  # counted as the parts are redacted

    @classmethod
    def of(cls, doc: Document, collection: Any) -> Target:
        return cls(
            doc.collection,
            doc.content_type,
            doc.title,
            doc.filename,
            dict(doc.metadata_ or {}),
            doc.acl,
            bool(collection and collection.redact_pii),
        )


class ChunkPipeline:
    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        analyzer: Analyzer,
        *,
        chunk_size: int,
        chunk_overlap: int,
        batch: int = 32,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store, self._embedder, self._analyzer = store, embedder, analyzer
        self._size, self._overlap, self._batch = chunk_size, chunk_overlap, batch
        self._limits = limits

    def stage(
        self, doc_id: str, payload: Payload, target: Target, id_prefix: str, progress: StageProgress | None = None
    ) -> list[str]:
        """Embed and stage the chunks batch by batch as the parts arrive; returns their ids in order. Until the
        last part is read, the total reported is an estimate from the share of the file read."""
        ids: list[str] = []
        pending: list[ChunkDraft] = []
        started = False
        for drafts, share_read in self._pieces(payload, target):
            pending += drafts
            if not started and progress is not None:
                progress(0, estimate(0, len(pending), share_read), target.title)
            started = True
            while len(pending) >= self._batch or (share_read >= 1.0 and pending):
                batch, pending = pending[: self._batch], pending[self._batch :]
                ids += self._stage_batch(doc_id, batch, id_prefix, len(ids), target)
                if progress is not None:
                    progress(len(ids), estimate(len(ids), len(pending), share_read), target.title)
        if not ids:
            raise Unprocessable("the document has no text to index")
        return ids

    def _pieces(self, payload: Payload, target: Target) -> Iterator[tuple[list[ChunkDraft], float]]:
        """The document's chunks part by part, with the share of the file read so far. Offsets are made
        document-wide (parts join with a blank line); PII is redacted before anything is chunked, embedded or
        stored; the title is settled with the first part."""
        offset, first = 0, True
        for part, share_read in parse_parts(payload, target.content_type, self._limits):
            if target.redact:
                part, count = redact_document(part)
                target.redactions = (target.redactions or 0) + count
            if first and part.title and target.title in ("Untitled", title_from_filename(target.filename)):
                # Without a title from the client, the document's own title beats its file name.
                target.title = part.title.strip()[:512] or target.title
            first = False
            drafts = chunk_document(part, self._size, self._overlap)
            for draft in drafts:
                draft.source.char_start += offset
                draft.source.char_end += offset
            offset += len(part.text) + 2
            yield drafts, share_read

    def _stage_batch(
        self, doc_id: str, batch: list[ChunkDraft], id_prefix: str, first: int, target: Target
    ) -> list[str]:
        indexed = [index_text(self._analyzer, target.title, d.source.heading_path, d.text) for d in batch]
        vectors = self._embedder.embed_documents([x.embed for x in indexed])
        records = [
            ChunkRecord(
                chunk_id=f"{id_prefix}{first + i:05d}",
                document_id=doc_id,
                collection=target.collection,
                ordinal=first + i,
                title=target.title,
                text=d.text,
                source=d.source,
                metadata=target.metadata,
                acl=target.acl,
                tokens=indexed[i].tokens,
                context=indexed[i].context,
                vector=vectors[i],
            )
            for i, d in enumerate(batch)
        ]
        self._store.add(records, live=False)
        return [r.chunk_id for r in records]


def estimate(done: int, pending: int, share_read: float) -> int:
    """Chunks in the whole document, from those cut so far and the share of the file they came from."""
    known = done + pending
    return known if share_read >= 1.0 else max(known, round(known / max(share_read, 1e-6)))


def title_from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return stem.strip() or None
