"""Reading what was ingested, as one caller may see it: documents, their chunks and their jobs.

Methods take the request's read session (``app.api.deps.ReadSessionDep``) and the caller; visibility is part of
every query (``app.stores.sql.repositories.visible_documents``), so a document the caller may not read looks
exactly like one that does not exist.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.access.caller import Caller
from app.core.errors import NotFound
from app.core.states import Scope
from app.stores.sql.models import Document, Job
from app.stores.sql.repositories import DocumentRepository, JobRepository
from app.stores.vector.base import ChunkFilter, ChunkRecord, ChunkStore


class Catalog:
    def __init__(self, store: ChunkStore) -> None:
        self._store = store

    def document(self, session: Session, caller: Caller, document_id: str) -> tuple[Document, Job | None]:
        """A readable document with its latest job."""
        caller.require(Scope.READ)
        doc = DocumentRepository(session).visible(document_id, caller)
        if doc is None:
            raise NotFound(f"document {document_id} does not exist")
        return doc, JobRepository(session).latest_for(doc.id)

    def documents(
        self, session: Session, caller: Caller, *, collection: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        """Readable documents, newest first, a page at a time."""
        caller.require(Scope.READ)
        caller.check_read(collection)
        return DocumentRepository(session).page(collection=collection, limit=limit, cursor=cursor, reader=caller)

    def chunks(self, session: Session, caller: Caller, document_id: str) -> list[ChunkRecord]:
        """A readable document's chunks in order (the store applies the caller's filter again)."""
        doc, _ = self.document(session, caller, document_id)
        flt = ChunkFilter(collections=caller.collections, principals=caller.principals)
        return self._store.get_chunks(doc.id, flt)

    def job(self, session: Session, caller: Caller, job_id: str) -> tuple[Job, Document]:
        caller.require(Scope.READ)
        found = JobRepository(session).visible(job_id, caller)
        if found is None:
            raise NotFound(f"job {job_id} does not exist")
        return found

    def jobs(
        self, session: Session, caller: Caller, *, status: str | None, collection: str | None, limit: int
    ) -> list[tuple[Job, Document]]:
        caller.require(Scope.READ)
        caller.check_read(collection)
        return JobRepository(session).recent(caller, status=status, collection=collection, limit=limit)
