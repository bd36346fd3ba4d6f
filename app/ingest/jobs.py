"""Running one ingest job: claim it, keep its lease alive, index the document, settle the outcome.

A job is claimed before it runs (by a worker, or inline by a ``wait=true`` upload); each claim counts an attempt
and names its holder. While the job runs, a heartbeat renews the lease every few seconds, so a slow parse is
never taken over by another worker, and notices when the job is no longer wanted: its document was deleted, or
another worker took the lease. The pipeline then stops at its next batch and what it staged is removed.

A job whose worker keeps dying (out of memory, killed) is given up once its attempts are spent, with a reason,
instead of being retried forever.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import AppError, NotFound, Unprocessable
from app.core.events import Observers
from app.core.states import DocumentStatus, JobStatus
from app.ingest.blobs import BlobStore
from app.ingest.pipeline import ChunkPipeline, Target
from app.stores.sql.models import Document, utcnow
from app.stores.sql.repositories import CollectionRepository, DocumentRepository, JobRepository
from app.stores.vector.base import ChunkStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
HEARTBEAT_MAX_S = 5.0  # how often at most a running job checks in (deletion is noticed within this)


# How a run ended, as the metrics count it: the document indexed, queued again for a retry, or failed.
RUN_OUTCOMES: dict[str, str] = {DocumentStatus.INDEXED: "succeeded", DocumentStatus.QUEUED: "retried"}
RUN_FAILED = "failed"


class Cancelled(Exception):
    """The job is no longer wanted: its document is being deleted, or another worker holds its lease."""


class JobRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ChunkStore,
        pipeline: ChunkPipeline,
        blobs: BlobStore,
        *,
        lease_s: float,
        max_attempts: int,
        backoff_s: float,
        observers: Observers | None = None,
    ) -> None:
        self._sessions, self._store, self._pipeline, self._blobs = sessions, store, pipeline, blobs
        self._observers = observers or Observers()
        self._lease = timedelta(seconds=lease_s)
        self._beat_s = min(lease_s / 3, HEARTBEAT_MAX_S)
        self._max_attempts, self._backoff_s = max_attempts, backoff_s
        self._running: dict[str, threading.Event] = {}  # document id -> cancel, for jobs of this process
        self._lock = threading.Lock()

    # --- claiming ----------------------------------------------------------------------------------
    def claim_next(self) -> tuple[str, str] | None:
        """The next due job, claimed: (job id, holder token); None when there is none."""
        holder = uuid.uuid4().hex
        with self._sessions.begin() as session:
            jobs = JobRepository(session)
            job_id = jobs.claimable()
            if job_id is None or jobs.claim(job_id, self._lease, holder) is None:
                return None
        return job_id, holder

    def claim(self, job_id: str) -> str | None:
        """Claim this job (for a ``wait=true`` upload); None when a worker holds it or it is done."""
        holder = uuid.uuid4().hex
        with self._sessions.begin() as session:
            return holder if JobRepository(session).claim(job_id, self._lease, holder) is not None else None

    def cancel(self, document_id: str) -> None:
        """Stop a job of this process at once (the heartbeat tells jobs of other processes)."""
        with self._lock:
            event = self._running.get(document_id)
        if event is not None:
            event.set()

    # --- running -----------------------------------------------------------------------------------
    def run(self, job_id: str, holder: str, progress: Progress | None = None) -> Document:
        """Run a job we hold. Returns the document as it ended: indexed, queued again (a transient failure,
        retried with a backoff) or failed (with the reason)."""
        started, status, chunks = time.perf_counter(), RUN_FAILED, 0
        try:
            doc = self._run(job_id, holder, progress)
            status = RUN_OUTCOMES.get(doc.status, RUN_FAILED)
            chunks = doc.chunk_count or 0
            return doc
        finally:
            self._observers.ingest_job_finished(status, time.perf_counter() - started, chunks)

    def _run(self, job_id: str, holder: str, progress: Progress | None) -> Document:
        with self._sessions.begin() as session:
            job = JobRepository(session).get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            doc = job.document
            if doc.status == DocumentStatus.INDEXED:
                job.status, job.lease_until = JobStatus.SUCCEEDED, None
                return doc
            doc_id, attempts = doc.id, job.attempts
            spent = attempts > self._max_attempts  # claimed again and again after its worker died
            if not spent:
                doc.status = DocumentStatus.PROCESSING
        if spent:
            reason = (
                f"gave up after {attempts - 1} attempts: the worker stopped while indexing this document "
                "(out of memory or killed?); check the file, then upload it again"
            )
            return self._settle_failure(doc_id, job_id, reason, retry=False)
        cancel = threading.Event()
        with self._lock:
            self._running[doc_id] = cancel
        beat = threading.Thread(target=self._heartbeat, args=(job_id, holder, doc_id, cancel), daemon=True)
        beat.start()
        try:
            chunk_count = self._index(doc_id, job_id, progress, cancel)
        except Exception as exc:  # the reason is stored on the document; nothing half-indexed stays
            return self._failed(doc_id, job_id, attempts, exc)
        finally:
            cancel.set()  # also stops the heartbeat
            with self._lock:
                self._running.pop(doc_id, None)
        with self._sessions.begin() as session:
            done = DocumentRepository(session).get(doc_id)
            job = JobRepository(session).get(job_id)
            if done is None or done.status == DocumentStatus.DELETING:  # deleted meanwhile: drop what we indexed
                self._store.delete_document(doc_id)
                raise NotFound(f"document {doc_id} was deleted while it was being ingested")
            done.status, done.error, done.chunk_count = DocumentStatus.INDEXED, None, chunk_count
            if job is not None:
                job.status, job.error, job.lease_until = JobStatus.SUCCEEDED, None, None
                job.progress_done = job.progress_total = chunk_count
            self._blobs.delete(doc_id)
        return done

    def _heartbeat(self, job_id: str, holder: str, doc_id: str, cancel: threading.Event) -> None:
        while not cancel.wait(self._beat_s):
            try:
                with self._sessions.begin() as session:
                    doc = DocumentRepository(session).get(doc_id)
                    wanted = doc is not None and doc.status != DocumentStatus.DELETING
                    ours = JobRepository(session).renew(job_id, holder, self._lease)
            except Exception:  # the database is briefly away: try again at the next beat
                log.warning("could not renew the lease of job %s", job_id, exc_info=True)
                continue
            if not (wanted and ours):
                log.info("job %s stops: %s", job_id, "its document was deleted" if not wanted else "lease lost")
                cancel.set()

    def _index(self, doc_id: str, job_id: str, progress: Progress | None, cancel: threading.Event) -> int:
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

        def report(done: int, total: int, title: str) -> None:
            if cancel.is_set():
                raise Cancelled
            self._set_progress(job_id, done, total, title=title if done == 0 else None, doc_id=doc_id)
            if progress is not None and done:
                progress(done, total)

        try:
            # Staged, then published at once: a document is never searchable with only part of its chunks.
            ids = self._pipeline.stage(doc_id, payload, target, f"{doc_id}-", report)
        finally:
            payload.discard()
        if cancel.is_set():
            raise Cancelled
        if target.redactions is not None:
            with self._sessions.begin() as session:
                found = DocumentRepository(session).get(doc_id)
                if found is not None:
                    found.redactions = target.redactions
        self._store.publish(doc_id, ids)
        return len(ids)

    def _set_progress(self, job_id: str, done: int, total: int, *, title: str | None, doc_id: str) -> None:
        with self._sessions.begin() as session:
            job = JobRepository(session).get(job_id)
            if job is not None:
                job.progress_done, job.progress_total = done, total
            if title is not None:
                doc = DocumentRepository(session).get(doc_id)
                if doc is not None:
                    doc.title = title

    # --- failures ----------------------------------------------------------------------------------
    def _failed(self, doc_id: str, job_id: str, attempts: int, exc: Exception) -> Document:
        if isinstance(exc, Cancelled):
            self._quietly_drop_chunks(doc_id)
            raise NotFound(f"document {doc_id} was deleted while it was being ingested") from exc
        permanent = isinstance(exc, AppError) and 400 <= exc.status < 500
        reason = exc.detail if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, AppError):
            log.exception("ingest of document %s failed", doc_id)
        self._quietly_drop_chunks(doc_id)
        return self._settle_failure(doc_id, job_id, reason, retry=not permanent and attempts < self._max_attempts)

    def _quietly_drop_chunks(self, doc_id: str) -> None:
        try:
            self._store.delete_document(doc_id)
        except Exception:  # the store is what failed: the retry (or the start-up cleanup) removes leftovers
            log.warning("could not remove partial chunks of %s now; they are removed on retry", doc_id)

    def _settle_failure(self, doc_id: str, job_id: str, reason: str, *, retry: bool) -> Document:
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(doc_id)
            job = JobRepository(session).get(job_id)
            if doc is None or doc.status == DocumentStatus.DELETING:
                raise NotFound(f"document {doc_id} was deleted while it was being ingested")
            if retry and job is not None:
                delay = self._backoff_s * 2 ** max(job.attempts - 1, 0)
                doc.status = DocumentStatus.QUEUED
                doc.error = f"attempt {job.attempts} failed, retrying in {delay:.0f} s: {reason}"
                job.status, job.error, job.lease_until, job.lease_holder = JobStatus.QUEUED, doc.error, None, None
                job.run_after = utcnow() + timedelta(seconds=delay)
            else:
                doc.status, doc.error, doc.chunk_count = DocumentStatus.FAILED, reason, 0
                if job is not None:
                    job.status, job.error, job.lease_until = JobStatus.FAILED, reason, None
        return doc
