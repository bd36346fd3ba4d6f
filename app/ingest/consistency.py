"""Consistency between the metadata store and the chunk store, which live in different systems.

A crash (kill -9) between two steps can leave: a document marked ``deleting`` whose chunks or row remain; chunks
whose document row is gone; an ``indexed`` document missing chunks; staged chunks of a replacement that was never
published. ``inspect`` finds them, ``recover`` repairs them; the service runs ``recover`` at start and
``knowledge-search doctor [--fix]`` runs them on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.core.states import DocumentStatus
from app.stores.sql.repositories import DocumentRepository, JobRepository
from app.stores.vector.base import ChunkStore


@dataclass(slots=True)
class Inconsistencies:
    orphan_chunk_documents: list[str]
    unfinished_deletes: list[str]
    wrong_chunk_counts: dict[str, tuple[int, int]]

    @property
    def clean(self) -> bool:
        return not (self.orphan_chunk_documents or self.unfinished_deletes or self.wrong_chunk_counts)


def inspect(sessions: sessionmaker[Session], store: ChunkStore) -> Inconsistencies:
    stored = store.chunk_counts()  # the chunk store first: a document added meanwhile is not an orphan
    with sessions() as session:
        docs = DocumentRepository(session)
        known = docs.all_ids()
        deleting = docs.ids_with_status(DocumentStatus.DELETING)
        indexed = docs.indexed_counts()
    return Inconsistencies(
        orphan_chunk_documents=sorted(set(stored) - known),
        unfinished_deletes=sorted(deleting),
        wrong_chunk_counts={d: (n, stored.get(d, 0)) for d, n in indexed.items() if stored.get(d, 0) != n},
    )


def recover(
    sessions: sessionmaker[Session],
    store: ChunkStore,
    finish_delete: Callable[[str], None],
    report: Inconsistencies | None = None,
) -> Inconsistencies:
    """Finish deletes, drop chunks without a document and unpublished staged chunks, and fail documents whose
    chunks are not all there (their originals are gone: they must be uploaded again). Each finding is checked
    again right before it is repaired, so work done meanwhile by other workers is left alone."""
    report = report or inspect(sessions, store)
    with sessions() as session:
        updating = JobRepository(session).active_updates()
    if not updating:  # staged chunks that no running update will publish: a crash left them
        store.delete_staged()
        with sessions.begin() as session:
            JobRepository(session).fail_interrupted_updates()
    for doc_id in report.unfinished_deletes:
        finish_delete(doc_id)
    for doc_id in report.orphan_chunk_documents:
        with sessions() as session:
            if DocumentRepository(session).get(doc_id) is not None:
                continue
        store.delete_document(doc_id)
    for doc_id, (expected, _) in report.wrong_chunk_counts.items():
        found = store.count(doc_id)
        with sessions.begin() as session:
            doc = DocumentRepository(session).get(doc_id)
            if doc is None or doc.status != DocumentStatus.INDEXED or doc.chunk_count == found:
                continue
            doc.status, doc.chunk_count = DocumentStatus.FAILED, 0
            doc.error = f"the chunk store held {found} of its {expected} chunks; upload the document again"
        store.delete_document(doc_id)
    return report
