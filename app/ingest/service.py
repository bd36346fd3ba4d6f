"""upload → parse → chunk → embed → store.

A document moves queued → processing → indexed (or failed, with the reason). Its chunk ids are
``<document id>-<ordinal>``, so re-running a job overwrites rather than duplicates.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import AppError, NotFound, PayloadTooLarge, Unprocessable
from app.ingest.blobs import BlobStore
from app.ingest.chunking import chunk_document
from app.ingest.parsers import detect_content_type, parse
from app.ingest.redaction import redact_document
from app.providers.base import Embedder
from app.search.analysis import Analyzer
from app.stores.sql.models import Document, Job
from app.stores.sql.repositories import CollectionRepository, DocumentRepository, JobRepository
from app.stores.vector.base import UNSET, ChunkRecord, ChunkStore, Unset

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class Upload:
    data: bytes
    collection: str = "default"
    filename: str | None = None
    declared_type: str | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None
    acl: list[str] | None = None


@dataclass(slots=True)
class Submitted:
    document: Document
    job: Job | None
    created: bool


class IngestService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ChunkStore,
        embedder: Embedder,
        analyzer: Analyzer,
        blobs: BlobStore,
        *,
        chunk_size: int,
        chunk_overlap: int,
        max_upload_bytes: int,
        embed_batch_size: int = 32,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._embedder = embedder
        self._analyzer = analyzer
        self._blobs = blobs
        self._chunk_size = chunk_size
        self._chunk_overlap = chunk_overlap
        self._max_upload_bytes = max_upload_bytes
        self._batch = embed_batch_size

    # --- submit ----------------------------------------------------------------------------------
    def submit(self, upload: Upload) -> Submitted:
        """Validate and record an upload; the returned job (if any) still has to run."""
        if len(upload.data) > self._max_upload_bytes:
            raise PayloadTooLarge(
                f"the file is {len(upload.data)} bytes; the limit is {self._max_upload_bytes} (KS_MAX_UPLOAD_MB)"
            )
        if not upload.data.strip():
            raise Unprocessable("the file is empty: upload a document with some text in it")
        content_type = detect_content_type(upload.filename, upload.data, upload.declared_type)
        digest = hashlib.sha256(upload.data).hexdigest()
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            existing = docs.by_hash(upload.collection, digest)
            if existing is not None and existing.status != "failed":
                return Submitted(existing, JobRepository(session).latest_for(existing.id), created=False)
            if existing is not None:  # a failed earlier attempt: start it again from scratch
                self._store.delete_document(existing.id)
                self._blobs.delete(existing.id)
                docs.delete(existing)
            CollectionRepository(session).ensure(upload.collection)
            doc = docs.add(
                Document(
                    collection=upload.collection,
                    title=(upload.title or _title_from_filename(upload.filename) or "Untitled")[:512],
                    filename=(upload.filename or None) and upload.filename[:512],
                    content_type=content_type,
                    size_bytes=len(upload.data),
                    content_hash=digest,
                    metadata_=upload.metadata or {},
                    status="queued",
                )
            )
            docs.set_readers(doc, upload.acl)
            job = JobRepository(session).add(Job(document_id=doc.id, kind="ingest", status="queued"))
            self._blobs.put(doc.id, upload.data)
        return Submitted(doc, job, created=True)

    # --- process ---------------------------------------------------------------------------------
    def run_job(self, job_id: str, progress: Progress | None = None) -> Document:
        """Parse, chunk, embed and index the job's document. Errors mark the document failed."""
        with self._sessions.begin() as session:
            job = JobRepository(session).get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            doc = job.document
            if doc.status == "indexed":
                job.status = "succeeded"
                return doc
            doc.status, job.status = "processing", "running"
            doc_id = doc.id
        try:
            chunk_count = self._index(doc_id, job_id, progress)
        except Exception as exc:  # the reason is stored on the document; nothing half-indexed stays
            reason = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, AppError):
                log.exception("ingest of document %s failed", doc_id)
            self._store.delete_document(doc_id)
            with self._sessions.begin() as session:
                doc = DocumentRepository(session).get(doc_id)
                job = JobRepository(session).get(job_id)
                if doc is not None:
                    doc.status, doc.error, doc.chunk_count = "failed", reason, 0
                if job is not None:
                    job.status, job.error = "failed", reason
            if doc is None:
                raise NotFound(f"document {doc_id} was deleted while it was being ingested") from exc
            return doc
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(doc_id)
            job = JobRepository(session).get(job_id)
            if doc is None:  # deleted meanwhile: drop what we indexed
                self._store.delete_document(doc_id)
                raise NotFound(f"document {doc_id} was deleted while it was being ingested")
            doc.status, doc.error, doc.chunk_count = "indexed", None, chunk_count
            if job is not None:
                job.status, job.error = "succeeded", None
                job.progress_done = job.progress_total = chunk_count
            self._blobs.delete(doc_id)
        return doc

    def _index(self, doc_id: str, job_id: str, progress: Progress | None) -> int:
        with self._sessions() as session:
            doc = DocumentRepository(session).get(doc_id)
            if doc is None:
                raise NotFound(f"document {doc_id} does not exist")
            content_type, title, filename = doc.content_type, doc.title, doc.filename
            collection, metadata, acl = doc.collection, dict(doc.metadata_ or {}), doc.acl
            coll = CollectionRepository(session).get(collection)
            redact = bool(coll and coll.redact_pii)
        parsed = parse(self._blobs.get(doc_id), content_type)
        redactions = None
        if redact:  # before anything is chunked, embedded or stored
            parsed, redactions = redact_document(parsed)
            self._record_redactions(doc_id, redactions)
        # Without a title from the client, the document's own title beats its file name.
        if parsed.title and title in ("Untitled", _title_from_filename(filename)):
            title = parsed.title.strip()[:512] or title
        drafts = chunk_document(parsed, self._chunk_size, self._chunk_overlap)
        if not drafts:
            raise Unprocessable("the document has no text to index")
        total = len(drafts)
        self._set_progress(job_id, 0, total, title=title, doc_id=doc_id)
        self._store.delete_document(doc_id)  # a retried job starts clean
        done = 0
        for start in range(0, total, self._batch):
            batch = drafts[start : start + self._batch]
            vectors = self._embedder.embed_documents([d.text for d in batch])
            records = [
                ChunkRecord(
                    chunk_id=f"{doc_id}-{start + i:05d}",
                    document_id=doc_id,
                    collection=collection,
                    ordinal=start + i,
                    title=title,
                    text=d.text,
                    source=d.source,
                    metadata=metadata,
                    acl=acl,
                    tokens=" ".join(self._analyzer.tokens(d.text)),
                    vector=vectors[i],
                )
                for i, d in enumerate(batch)
            ]
            self._store.add(records)
            done += len(batch)
            self._set_progress(job_id, done, total)
            if progress is not None:
                progress(done, total)
        return total

    def _record_redactions(self, doc_id: str, count: int) -> None:
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(doc_id)
            if doc is not None:
                doc.redactions = count

    def _set_progress(
        self, job_id: str, done: int, total: int, *, title: str | None = None, doc_id: str | None = None
    ) -> None:
        with self._sessions.begin() as session:
            job = JobRepository(session).get(job_id)
            if job is not None:
                job.progress_done, job.progress_total = done, total
            if title is not None and doc_id is not None:
                doc = DocumentRepository(session).get(doc_id)
                if doc is not None:
                    doc.title = title

    # --- update ----------------------------------------------------------------------------------
    def update(
        self,
        document_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        acl: list[str] | None | Unset = UNSET,
    ) -> Document:
        """Change title, metadata or ACL in both stores. Whichever side restricts access is written first, so a
        crash in between never shows the document's text to more readers than either ACL allows."""
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            doc = docs.get(document_id)
            if doc is None:
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
        if opening_up:
            self._store.update_document(document_id, title=title, metadata=metadata, acl=acl)
        return doc

    # --- delete ----------------------------------------------------------------------------------
    def delete(self, document_id: str) -> None:
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            doc = docs.get(document_id)
            if doc is None:
                raise NotFound(f"document {document_id} does not exist")
            # Chunks first: a crash after this leaves a document without chunks (visible, fixable),
            # never chunks without a document.
            self._store.delete_document(document_id)
            docs.delete(doc)
        self._blobs.delete(document_id)


def _title_from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return stem.strip() or None
