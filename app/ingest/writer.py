"""Writing a document to both stores in an order that is safe at every step; the ingest service decides *what*
to write (``service.py``), this module *how*.

- ``swap_content``: new chunks are staged beside the old ones and published at once, so searches see the old
  version until every new chunk is there, then only the new one (with its new access list and metadata).
- ``apply``: title, metadata or access list; whichever side restricts access is written first, so a crash in
  between never shows the text to more readers than either access list allows.
- ``remove``: chunks first, then the row (the document is already invisible: marked ``deleting``).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import AppError, Conflict, NotFound
from app.core.states import DocumentStatus, JobKind, JobStatus
from app.ingest.blobs import BlobStore
from app.ingest.pipeline import ChunkPipeline, StageProgress, Target
from app.ingest.upload import Upload
from app.stores.sql.models import Document, Job, utcnow
from app.stores.sql.repositories import CollectionRepository, DocumentRepository, JobRepository
from app.stores.vector.base import UNSET, ChunkStore, Unset


class DocumentWriter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ChunkStore,
        pipeline: ChunkPipeline,
        blobs: BlobStore,
        *,
        lease: timedelta,
    ) -> None:
        self._sessions, self._store, self._pipeline, self._blobs = sessions, store, pipeline, blobs
        self._lease = lease

    def swap_content(
        self,
        document_id: str,
        upload: Upload,
        content_type: str,
        digest: str,
        acl: list[str] | None,
        metadata: dict[str, Any],
        title: str,
    ) -> tuple[Document, Job | None]:
        """Searches see the old chunks until every new one is staged, then only the new ones (with the new
        access list and metadata)."""
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(document_id)
            if doc is None or doc.status != DocumentStatus.INDEXED:
                raise Conflict(f"document {document_id} is changing: replace it once it is indexed")
            job = JobRepository(session).add(
                Job(
                    document_id=doc.id,
                    kind=JobKind.UPDATE,
                    status=JobStatus.RUNNING,
                    attempts=1,
                    lease_until=utcnow() + self._lease,
                )
            )
            target = Target.of(doc, CollectionRepository(session).get(doc.collection))
            target.content_type, target.filename = content_type, upload.filename or doc.filename
            target.title, target.metadata, target.acl = title, metadata, acl
            job_id = job.id
        try:
            prefix = f"{document_id}-{uuid.uuid4().hex[:6]}-"
            ids = self._pipeline.stage(document_id, upload.payload, target, prefix, self._progress(job_id))
        except Exception as exc:
            self._store.delete_staged(document_id)
            reason = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            with self._sessions.begin() as session:
                failed = JobRepository(session).get(job_id)
                if failed is not None:
                    failed.status, failed.error, failed.lease_until = JobStatus.FAILED, reason, None
            raise
        self._store.publish(document_id, ids)
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            doc = docs.get(document_id)
            finished = JobRepository(session).get(job_id)
            if doc is None:
                self._store.delete_document(document_id)
                raise NotFound(f"document {document_id} was deleted while it was being replaced")
            doc.content_type, doc.content_hash, doc.size_bytes = content_type, digest, upload.payload.size
            doc.filename, doc.title, doc.metadata_ = target.filename, target.title, target.metadata
            doc.chunk_count, doc.status, doc.error, doc.redactions = (
                len(ids),
                DocumentStatus.INDEXED,
                None,
                target.redactions,
            )
            docs.set_readers(doc, acl)
            doc.dedup_key = settled_key(doc.id)
            if finished is not None:
                finished.status, finished.lease_until = JobStatus.SUCCEEDED, None
                finished.progress_done = finished.progress_total = len(ids)
        return doc, finished

    def _progress(self, job_id: str) -> StageProgress:
        def report(done: int, total: int, title: str) -> None:
            with self._sessions.begin() as session:
                job = JobRepository(session).get(job_id)
                if job is not None:
                    job.progress_done, job.progress_total = done, total
                    job.lease_until = utcnow() + self._lease  # still alive: keep the lease

        return report

    def apply(
        self,
        document_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        acl: list[str] | None | Unset = UNSET,
    ) -> Document:
        """Whichever side restricts access is written first, so a crash in between never shows the document's
        text to more readers than either access list allows."""
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            doc = docs.get(document_id)
            if doc is None or doc.status == DocumentStatus.DELETING:
                raise NotFound(f"document {document_id} does not exist")
            opening_up = not isinstance(acl, Unset) and (
                acl is None or (doc.acl is not None and set(doc.acl) <= set(acl))
            )
            if not opening_up:
                self._store.update_document(document_id, title=title, metadata=metadata, acl=acl)
            if title is not None:
                doc.title = title
            if metadata is not None:
                doc.metadata_ = metadata
            if not isinstance(acl, Unset):
                docs.set_readers(doc, acl)
            doc.dedup_key = settled_key(doc.id)
        if opening_up:
            self._store.update_document(document_id, title=title, metadata=metadata, acl=acl)
        return doc

    def remove(self, document_id: str) -> None:
        self._store.delete_document(document_id)
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            doc = docs.get(document_id)
            if doc is not None:
                docs.delete(doc)
        self._blobs.delete(document_id)


def settled_key(document_id: str) -> str:
    """The dedup key of a document that has changed since it was uploaded: its own, unique. Only a fresh upload
    is deduplicated against the bytes it came with."""
    return hashlib.sha256(f"document:{document_id}".encode()).hexdigest()
