"""upload → parse → chunk → embed → store.

A document moves queued → processing → indexed (or failed, with the reason). Its chunk ids are
``<document id>-<ordinal>``, so re-running a job overwrites rather than duplicates.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import AppError, Conflict, NotFound, PayloadTooLarge, Unprocessable
from app.core.events import Observers
from app.ingest.blobs import BlobStore
from app.ingest.consistency import Inconsistencies, inspect, recover
from app.ingest.parsers import DEFAULT_LIMITS, ParseLimits, detect_content_type
from app.ingest.payload import Payload
from app.ingest.pipeline import ChunkPipeline, StageProgress, Target, title_from_filename
from app.providers.base import Embedder
from app.stores.sql.models import Document, Job, utcnow
from app.stores.sql.repositories import CollectionRepository, DocumentRepository, JobRepository
from app.stores.vector.base import UNSET, ChunkStore, Unset
from app.text.analysis import Analyzer

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class Upload:
    payload: Payload
    collection: str = "default"
    filename: str | None = None
    declared_type: str | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None
    acl: list[str] | None = None
    # Where the document came from (e.g. s3://bucket/key), for sources that sync.
    external_id: str | None = None

    @classmethod
    def of_bytes(cls, data: bytes, **fields: Any) -> Upload:
        return cls(Payload.of_bytes(data), **fields)


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
        max_attempts: int = 5,
        lease_s: float = 120.0,
        backoff_s: float = 2.0,
        observers: Observers | None = None,
        parse_limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        self._observers = observers or Observers()
        self._max_attempts = max_attempts
        self._lease = timedelta(seconds=lease_s)
        self._backoff_s = backoff_s
        self._sessions = sessions
        self._store = store
        self._blobs = blobs
        self._max_upload_bytes = max_upload_bytes
        self._parse_limits = parse_limits
        self._pipeline = ChunkPipeline(
            store,
            embedder,
            analyzer,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            batch=embed_batch_size,
            limits=parse_limits,
        )

    # --- submit ----------------------------------------------------------------------------------
    def submit(self, upload: Upload) -> Submitted:
        """Validate and record an upload; the returned job (if any) still has to run."""
        content_type, digest = self._validate(upload)
        for attempt in (1, 2, 3):
            try:
                return self._record(upload, content_type, digest)
            except IntegrityError:
                # A concurrent upload created the same collection, or the same document, first: look again
                # (the second time the collection exists and the document is found as a duplicate).
                if attempt == 3:
                    raise
        raise AssertionError("unreachable")

    def _record(self, upload: Upload, content_type: str, digest: str) -> Submitted:
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            existing = docs.by_hash(upload.collection, digest)
            if existing is not None and existing.status not in ("failed", "deleting"):
                return Submitted(existing, JobRepository(session).latest_for(existing.id), created=False)
            if existing is not None:  # a failed (or half-deleted) earlier attempt: start again from scratch
                self._store.delete_document(existing.id)
                self._blobs.delete(existing.id)
                docs.delete(existing)
            CollectionRepository(session).ensure(upload.collection)
            doc = docs.add(
                Document(
                    collection=upload.collection,
                    title=(upload.title or title_from_filename(upload.filename) or "Untitled")[:512],
                    filename=(upload.filename or None) and upload.filename[:512],
                    content_type=content_type,
                    size_bytes=upload.payload.size,
                    content_hash=digest,
                    metadata_=upload.metadata or {},
                    external_id=upload.external_id,
                    status="queued",
                )
            )
            docs.set_readers(doc, upload.acl)
            job = JobRepository(session).add(Job(document_id=doc.id, kind="ingest", status="queued"))
            self._blobs.put(doc.id, upload.payload)
        return Submitted(doc, job, created=True)

    def _validate(self, upload: Upload) -> tuple[str, str]:
        payload = upload.payload
        if payload.size > self._max_upload_bytes:
            raise PayloadTooLarge(
                f"the file is {payload.size} bytes; the limit is {self._max_upload_bytes} (KS_MAX_UPLOAD_MB)"
            )
        if payload.is_blank():
            raise Unprocessable("the file is empty: upload a document with some text in it")
        content_type = detect_content_type(upload.filename, payload, upload.declared_type, self._parse_limits)
        if payload.sha256 is None:
            raise ValueError("an upload's payload is hashed when it is read (Payload.of_bytes/of_file/spool)")
        return content_type, payload.sha256

    # --- process ---------------------------------------------------------------------------------
    def run_job(self, job_id: str, progress: Progress | None = None) -> Document:
        """Parse, chunk, embed and index the job's document.

        A permanent error (the file itself is bad: a 4xx) fails the document at once, with the reason. A
        transient one (a store or provider briefly unavailable) puts the job back in the queue with a backoff,
        up to ``max_attempts``; the document is then ``queued`` with the last error.
        """
        started, status, chunks = time.perf_counter(), "failed", 0
        try:
            doc = self._run_job(job_id, progress)
            # a transient failure puts the job back in the queue (document "queued") for a later attempt
            status = {"indexed": "succeeded", "queued": "retried"}.get(doc.status, "failed")
            chunks = doc.chunk_count or 0
            return doc
        finally:
            self._observers.ingest_job_finished(status, time.perf_counter() - started, chunks)

    def _run_job(self, job_id: str, progress: Progress | None) -> Document:
        with self._sessions.begin() as session:
            job = JobRepository(session).get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            doc = job.document
            if doc.status == "indexed":
                job.status = "succeeded"
                return doc
            if job.status != "running":  # run directly (wait=true), not claimed by a worker: count the attempt
                job.attempts += 1
            doc.status, job.status = "processing", "running"
            job.lease_until = utcnow() + self._lease
            doc_id, attempts = doc.id, job.attempts
        try:
            chunk_count = self._index(doc_id, job_id, progress)
        except Exception as exc:  # the reason is stored on the document; nothing half-indexed stays
            return self._failed(doc_id, job_id, attempts, exc)
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(doc_id)
            job = JobRepository(session).get(job_id)
            if doc is None or doc.status == "deleting":  # deleted meanwhile: drop what we indexed
                self._store.delete_document(doc_id)
                raise NotFound(f"document {doc_id} was deleted while it was being ingested")
            doc.status, doc.error, doc.chunk_count = "indexed", None, chunk_count
            if job is not None:
                job.status, job.error, job.lease_until = "succeeded", None, None
                job.progress_done = job.progress_total = chunk_count
            self._blobs.delete(doc_id)
        return doc

    def _failed(self, doc_id: str, job_id: str, attempts: int, exc: Exception) -> Document:
        permanent = isinstance(exc, AppError) and 400 <= exc.status < 500
        reason = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, AppError):
            log.exception("ingest of document %s failed", doc_id)
        retry = not permanent and attempts < self._max_attempts
        try:
            self._store.delete_document(doc_id)
        except Exception:  # the store is what failed: the retry (or the start-up cleanup) removes leftovers
            log.warning("could not remove partial chunks of %s now; they are removed on retry", doc_id)
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(doc_id)
            job = JobRepository(session).get(job_id)
            if doc is None or doc.status == "deleting":
                raise NotFound(f"document {doc_id} was deleted while it was being ingested") from exc
            if retry:
                delay = self._backoff_s * 2 ** max(attempts - 1, 0)
                doc.status, doc.error = "queued", f"attempt {attempts} failed, retrying in {delay:.0f} s: {reason}"
                if job is not None:
                    job.status, job.error, job.lease_until = "queued", doc.error, None
                    job.run_after = utcnow() + timedelta(seconds=delay)
            else:
                doc.status, doc.error, doc.chunk_count = "failed", reason, 0
                if job is not None:
                    job.status, job.error, job.lease_until = "failed", reason, None
        return doc

    def _index(self, doc_id: str, job_id: str, progress: Progress | None) -> int:
        with self._sessions() as session:
            doc = DocumentRepository(session).get(doc_id)
            if doc is None:
                raise NotFound(f"document {doc_id} does not exist")
            target = Target.of(doc, CollectionRepository(session).get(doc.collection))
        self._store.delete_document(doc_id)  # a retried job starts clean
        try:
            payload = self._blobs.get(doc_id)
        except FileNotFoundError as exc:  # permanent: no retry brings it back
            raise Unprocessable(
                "the uploaded original is no longer in the blob store (KS_BLOB_STORE): upload the document again"
            ) from exc
        try:
            # Staged, then published at once: a document is never searchable with only part of its chunks.
            ids = self._pipeline.stage(doc_id, payload, target, f"{doc_id}-", self._reporter(job_id, doc_id, progress))
        finally:
            payload.discard()
        if target.redactions is not None:
            self._record_redactions(doc_id, target.redactions)
        self._store.publish(doc_id, ids)
        return len(ids)

    # --- replace ---------------------------------------------------------------------------------
    def replace(self, document_id: str, upload: Upload) -> Document:
        """Swap a document's content: searches see the old chunks until every new one is indexed, then only
        the new ones. The document keeps its id, collection, metadata and ACL (unless the upload sets them)."""
        content_type, digest = self._validate(upload)
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            doc = docs.get(document_id)
            if doc is None or doc.status == "deleting":
                raise NotFound(f"document {document_id} does not exist")
            if doc.content_hash == digest:
                return doc
            twin = docs.by_hash(doc.collection, digest)
            if twin is not None:
                raise Conflict(f"document {twin.id} in this collection already has this content")
            if doc.status not in ("indexed", "failed"):
                raise Conflict(f"document {document_id} is still {doc.status}: replace it once it is indexed")
            job = JobRepository(session).add(
                Job(document_id=doc.id, kind="update", status="running", attempts=1, lease_until=utcnow() + self._lease)
            )
            target = Target.of(doc, CollectionRepository(session).get(doc.collection))
            target.content_type = content_type
            target.filename = upload.filename or doc.filename
            target.title = upload.title or title_from_filename(upload.filename) or doc.title
            if upload.metadata:  # an upload without metadata keeps the document's (PATCH changes it)
                target.metadata = upload.metadata
            job_id = job.id
        try:
            with upload.payload as payload:
                prefix = f"{document_id}-{uuid.uuid4().hex[:6]}-"
                ids = self._pipeline.stage(document_id, payload, target, prefix, self._reporter(job_id, None, None))
        except Exception as exc:
            self._store.delete_staged(document_id)
            reason = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            with self._sessions.begin() as session:
                job = JobRepository(session).get(job_id)
                if job is not None:
                    job.status, job.error, job.lease_until = "failed", reason, None
            raise
        self._store.publish(document_id, ids)
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(document_id)
            job = JobRepository(session).get(job_id)
            if doc is None:
                self._store.delete_document(document_id)
                raise NotFound(f"document {document_id} was deleted while it was being replaced")
            doc.content_type, doc.content_hash, doc.size_bytes = content_type, digest, upload.payload.size
            doc.filename, doc.title, doc.metadata_ = target.filename, target.title, target.metadata
            doc.chunk_count, doc.status, doc.error, doc.redactions = len(ids), "indexed", None, target.redactions
            if job is not None:
                job.status, job.lease_until = "succeeded", None
        return doc

    def _record_redactions(self, doc_id: str, count: int) -> None:
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(doc_id)
            if doc is not None:
                doc.redactions = count

    def _reporter(self, job_id: str, doc_id: str | None, progress: Progress | None) -> StageProgress:
        """Progress of a staging run into the job (with the title, settled by the first part) and ``progress``."""

        def report(done: int, total: int, title: str) -> None:
            self._set_progress(job_id, done, total, title=title if done == 0 else None, doc_id=doc_id)
            if progress is not None and done:
                progress(done, total)

        return report

    def _set_progress(
        self, job_id: str, done: int, total: int, *, title: str | None = None, doc_id: str | None = None
    ) -> None:
        with self._sessions.begin() as session:
            job = JobRepository(session).get(job_id)
            if job is not None:
                job.progress_done, job.progress_total = done, total
                job.lease_until = utcnow() + self._lease  # still alive: keep the lease
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
        """Mark the document ``deleting`` (it disappears from every read at once), remove its chunks, then its
        row. A crash at any point is finished by ``recover()`` at the next start."""
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(document_id)
            if doc is None or doc.status == "deleting":
                raise NotFound(f"document {document_id} does not exist")
            doc.status = "deleting"
        self._finish_delete(document_id)

    def _finish_delete(self, document_id: str) -> None:
        self._store.delete_document(document_id)
        with self._sessions.begin() as session:
            docs = DocumentRepository(session)
            doc = docs.get(document_id)
            if doc is not None:
                docs.delete(doc)
        self._blobs.delete(document_id)

    def active_job_counts(self) -> dict[str, int]:
        """Ingest jobs queued and running now (for the metrics)."""
        with self._sessions() as session:
            return JobRepository(session).active_counts()

    # --- consistency (app.ingest.consistency) -------------------------------------------------------
    def inspect(self) -> Inconsistencies:
        """Differences between the metadata store and the chunk store."""
        return inspect(self._sessions, self._store)

    def recover(self, report: Inconsistencies | None = None) -> Inconsistencies:
        """Repair what a crash can leave (see app.ingest.consistency.recover)."""
        return recover(self._sessions, self._store, self._finish_delete, report)
