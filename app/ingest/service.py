"""The one way a document enters or changes: ``upsert``; and ``update`` / ``delete`` for the rest of its life.

Every caller comes here: the API (upload, replace), registered sources (S3 sync), the folder ingest and the CLI.
What differs between them are arguments: who calls (``caller``: a key, or the service itself), where the document
comes from (``origin``), whether to wait for it to be searchable. So the same situation has the same outcome
everywhere: unchanged, replaced, refused, or a transient failure that leaves it queued.

The policy, in order: may the caller write here; is the upload acceptable; which existing document does it
mean (by id, or by ``external_id`` among the documents of its origin **that the caller may read** — a document
it cannot read is never found, so it can be neither changed nor detected); then create, replace or nothing.
An upload that sets ``acl`` or ``metadata`` applies them together with its content.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.access.caller import Caller
from app.core.errors import (
    BadInput,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    Unprocessable,
)
from app.core.events import Observers
from app.core.metadata import check_metadata
from app.core.patterns import COLLECTION_RULE, PRINCIPAL_RULE, is_collection, is_principal
from app.core.states import DocumentStatus, JobKind, JobStatus, Scope
from app.ingest.blobs import BlobStore
from app.ingest.consistency import Inconsistencies, inspect, recover
from app.ingest.jobs import JobRunner, Progress
from app.ingest.parsers import detect_content_type
from app.ingest.pipeline import ChunkPipeline, title_from_filename
from app.ingest.upload import RESERVED_EXTERNAL_SCHEMES, Outcome, Upload, Upserted, same_readers
from app.ingest.writer import DocumentWriter
from app.providers.base import Embedder
from app.stores.sql.models import ORIGIN_API, Document, Job, dedup_key
from app.stores.sql.repositories import CollectionRepository, DocumentRepository, JobRepository
from app.stores.vector.base import UNSET, ChunkStore, Unset
from app.text.analysis import Analyzer

log = logging.getLogger(__name__)
PENDING = (DocumentStatus.QUEUED, DocumentStatus.PROCESSING)


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
    ) -> None:
        self._sessions, self._store, self._blobs = sessions, store, blobs
        self._max_upload_bytes = max_upload_bytes
        self._lease = timedelta(seconds=lease_s)
        self._observers = observers or Observers()
        self._pipeline = ChunkPipeline(
            store, embedder, analyzer, chunk_size=chunk_size, chunk_overlap=chunk_overlap, batch=embed_batch_size
        )
        self._writer = DocumentWriter(sessions, store, self._pipeline, blobs, lease=self._lease)
        self.jobs = JobRunner(
            sessions,
            store,
            self._pipeline,
            blobs,
            lease_s=lease_s,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            observers=self._observers,
        )

    # --- the one way in ----------------------------------------------------------------------------
    def upsert(
        self,
        upload: Upload,
        caller: Caller,
        *,
        origin: str = ORIGIN_API,
        wait: bool = True,
        document_id: str | None = None,
        progress: Progress | None = None,
    ) -> Upserted:
        """Create, replace or confirm a document from an upload.

        ``document_id``: replace that document (PUT). Otherwise an ``external_id`` names the document among those
        of ``origin`` the caller may read; without one, a readable document with the same bytes, access list and
        origin is the same document. ``wait``: index now and return once searchable; else queue (202).
        Raises: Forbidden, NotFound (a document the caller cannot read), 4xx for a bad upload, StoreUnavailable
        when indexing failed for now (the document stays queued and is retried).
        """
        caller.require(Scope.WRITE)
        content_type, digest = self._validate(upload, origin)
        if document_id is not None:
            with self._sessions() as session:
                target = DocumentRepository(session).visible(document_id, caller)
            if target is None:
                raise NotFound(f"document {document_id} does not exist")
            _check_writable(target, caller)
        else:
            caller.check_write(upload.collection)
            target = self._by_external_id(upload, origin, caller) if upload.external_id else None
        if target is not None and target.status == DocumentStatus.INDEXED:
            return self._replace(target, upload, content_type, digest)
        if target is not None:  # a version that never finished (queued, processing, failed)
            if target.content_hash == digest and target.status != DocumentStatus.FAILED:
                return self._existing(target, wait, progress)
            self._delete_quietly(target.id)  # superseded by this upload
            upload.collection = target.collection
        return self._create(upload, caller, origin, content_type, digest, wait, progress)

    def _validate(self, upload: Upload, origin: str) -> tuple[str, str]:
        payload = upload.payload
        if payload.size > self._max_upload_bytes:
            raise PayloadTooLarge(
                f"the file is {payload.size} bytes; the limit is {self._max_upload_bytes} (KS_MAX_UPLOAD_MB)"
            )
        if not is_collection(upload.collection):
            raise BadInput(COLLECTION_RULE)
        acl = upload.new_acl()
        if acl and not all(is_principal(p) for p in acl):
            raise BadInput(f"acl: {PRINCIPAL_RULE}")
        if not isinstance(upload.metadata, Unset):
            try:
                check_metadata(upload.metadata)
            except ValueError as exc:
                raise Unprocessable(str(exc)) from exc
        if upload.external_id is not None:
            if not upload.external_id or len(upload.external_id) > 256:
                raise BadInput("external_id is 1 to 256 characters")
            if origin == ORIGIN_API and upload.external_id.lower().startswith(RESERVED_EXTERNAL_SCHEMES):
                raise Unprocessable(
                    f"external_id values starting with {' or '.join(RESERVED_EXTERNAL_SCHEMES)} belong to the "
                    "sources an admin registers (S3 sync) and the folder ingest: choose another id"
                )
        if payload.is_blank():
            raise Unprocessable("the file is empty: upload a document with some text in it")
        content_type = detect_content_type(upload.filename, payload, upload.declared_type)
        if payload.sha256 is None:
            raise ValueError("an upload's payload is hashed when it is read (Payload.of_bytes/of_file/spool)")
        return content_type, payload.sha256

    def _by_external_id(self, upload: Upload, origin: str, caller: Caller) -> Document | None:
        """The newest readable document with this external id; older readable ones (two uploads that raced)
        are the same document and go."""
        assert upload.external_id is not None
        with self._sessions() as session:
            found = DocumentRepository(session).with_external_id(upload.collection, upload.external_id, origin, caller)
        for older in found[1:]:
            self._delete_quietly(older.id)
        return found[0] if found else None

    # --- create ------------------------------------------------------------------------------------
    def _create(
        self,
        upload: Upload,
        caller: Caller,
        origin: str,
        content_type: str,
        digest: str,
        wait: bool,
        progress: Progress | None,
    ) -> Upserted:
        acl = upload.new_acl()
        with self._sessions() as session:
            same = [
                doc
                for doc in DocumentRepository(session).same_content(upload.collection, digest, caller)
                if doc.origin == origin and doc.external_id == upload.external_id and same_readers(doc.acl, acl)
            ]
        for doc in same:
            if doc.status != DocumentStatus.FAILED:
                return self._existing(doc, wait, progress)
            self._delete_quietly(doc.id)  # an earlier attempt failed: start again
        key = dedup_key(origin, caller.key_id, digest, acl, upload.external_id)
        for attempt in (1, 2):
            try:
                doc, job = self._record(upload, caller, origin, content_type, digest, key)
                break
            except IntegrityError:
                # The same key uploaded the same document before (a retry, two at once, or one under an access
                # list that leaves its uploader out): that is this one.
                with self._sessions() as session:
                    twin = DocumentRepository(session).by_dedup_key(upload.collection, key)
                if twin is None or attempt == 2:
                    raise
                if twin.status != DocumentStatus.FAILED:
                    return self._existing(twin, wait, progress)
                self._delete_quietly(twin.id)
        else:
            raise AssertionError("unreachable")
        if not wait:
            return Upserted(Outcome.QUEUED, doc, job)
        return self._indexed_now(doc, progress)

    def _record(
        self, upload: Upload, caller: Caller, origin: str, content_type: str, digest: str, key: str
    ) -> tuple[Document, Job]:
        for attempt in (1, 2):
            try:
                with self._sessions.begin() as session:
                    CollectionRepository(session).ensure(upload.collection)
                    docs = DocumentRepository(session)
                    doc = docs.add(
                        Document(
                            collection=upload.collection,
                            title=(upload.title or title_from_filename(upload.filename) or "Untitled")[:512],
                            filename=(upload.filename or None) and upload.filename[:512],
                            content_type=content_type,
                            size_bytes=upload.payload.size,
                            content_hash=digest,
                            metadata_=upload.new_metadata(),
                            external_id=upload.external_id,
                            origin=origin,
                            owner_key=caller.key_id,
                            dedup_key=key,
                            status=DocumentStatus.QUEUED,
                        )
                    )
                    docs.set_readers(doc, upload.new_acl())
                    job = JobRepository(session).add(Job(document_id=doc.id, kind=JobKind.INGEST))
                    self._blobs.put(doc.id, upload.payload)
                return doc, job
            except IntegrityError:
                with self._sessions() as session:
                    collection_exists = CollectionRepository(session).get(upload.collection) is not None
                # A concurrent upload created the collection first (retry once), or the same document (raise).
                if attempt == 2 or not collection_exists or self._dedup_taken(upload.collection, key):
                    raise
        raise AssertionError("unreachable")

    def _dedup_taken(self, collection: str, key: str) -> bool:
        with self._sessions() as session:
            return DocumentRepository(session).by_dedup_key(collection, key) is not None

    def _existing(self, doc: Document, wait: bool, progress: Progress | None) -> Upserted:
        """The upload is a document we already have: unchanged when indexed; a pending one is indexed now when
        the caller waits, else reported as queued."""
        with self._sessions() as session:
            job = JobRepository(session).latest_for(doc.id)
        if doc.status == DocumentStatus.INDEXED or job is None:
            return Upserted(Outcome.UNCHANGED, doc, job)
        if not wait:
            return Upserted(Outcome.QUEUED, doc, job)
        return self._indexed_now(doc, progress)

    def _indexed_now(self, doc: Document, progress: Progress | None) -> Upserted:
        """Index a pending document before answering (wait=true): run its job here, or, while a live worker
        runs it (it renews its lease), wait for that worker; a worker that died loses its lease and we take over."""
        while True:
            with self._sessions() as session:
                job = JobRepository(session).latest_for(doc.id)
                current = DocumentRepository(session).get(doc.id)
            if current is None or current.status == DocumentStatus.DELETING or job is None:
                raise NotFound(f"document {doc.id} was deleted meanwhile: upload it again")
            if current.status == DocumentStatus.INDEXED:
                return Upserted(Outcome.CREATED, current, job)
            holder = self.jobs.claim(job.id)  # queued, or held by a worker whose lease ran out
            if holder is not None:
                return self._ran(self.jobs.run(job.id, holder, progress), job.id)
            if job.status != JobStatus.RUNNING:  # it ended meanwhile: failed, or queued again for a retry
                return self._ran(current, job.id)
            time.sleep(0.25)

    def _ran(self, doc: Document, job_id: str) -> Upserted:
        """The outcome of a job run inline: indexed, or an error that says what happened."""
        if doc.status == DocumentStatus.QUEUED:  # a transient failure: queued again with a backoff
            raise StoreUnavailable(
                f"the document could not be indexed yet ({doc.error}); it stays queued and is retried "
                f"automatically: follow GET /v1/jobs/{job_id}",
                headers={"Retry-After": "5"},
                extra={"document_id": doc.id, "job_id": job_id},
            )
        if doc.status == DocumentStatus.FAILED:
            # Nothing half-made stays behind: the client fixes the file and uploads again.
            self._delete_quietly(doc.id)
            raise Unprocessable(doc.error or "the document could not be indexed")
        with self._sessions() as session:
            return Upserted(
                Outcome.CREATED, DocumentRepository(session).get(doc.id) or doc, JobRepository(session).get(job_id)
            )

    # --- replace -----------------------------------------------------------------------------------
    def _replace(self, doc: Document, upload: Upload, content_type: str, digest: str) -> Upserted:
        """Apply an upload to an indexed document: what the upload sets (access list, metadata, title) changes
        with the content, atomically for searches; what it leaves out stays as it was."""
        acl = doc.acl if isinstance(upload.acl, Unset) else upload.new_acl()
        metadata = dict(doc.metadata_ or {}) if isinstance(upload.metadata, Unset) else upload.new_metadata()
        if doc.content_hash == digest:
            changes: dict[str, Any] = {}
            if not same_readers(acl, doc.acl):
                changes["acl"] = acl
            if metadata != (doc.metadata_ or {}):
                changes["metadata"] = metadata
            if upload.title and upload.title != doc.title:
                changes["title"] = upload.title[:512]
            if not changes:
                with self._sessions() as session:
                    return Upserted(Outcome.UNCHANGED, doc, JobRepository(session).latest_for(doc.id))
            return Upserted(Outcome.REPLACED, self._writer.apply(doc.id, **changes))
        title = upload.title or title_from_filename(upload.filename) or doc.title
        replaced, job = self._writer.swap_content(doc.id, upload, content_type, digest, acl, metadata, title[:512])
        return Upserted(Outcome.REPLACED, replaced, job, content_changed=True)

    # --- update (title, metadata, access list) -----------------------------------------------------
    def update(
        self,
        document_id: str,
        caller: Caller,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        acl: list[str] | None | Unset = UNSET,
    ) -> Document:
        """PATCH: change a readable document's title, metadata or access list in both stores."""
        caller.require(Scope.WRITE)
        with self._sessions() as session:
            doc = DocumentRepository(session).visible(document_id, caller)
        if doc is None:
            raise NotFound(f"document {document_id} does not exist")
        _check_writable(doc, caller)
        if metadata is not None:
            try:
                check_metadata(metadata)
            except ValueError as exc:
                raise Unprocessable(str(exc)) from exc
        if not isinstance(acl, Unset) and acl and not all(is_principal(p) for p in acl):
            raise BadInput(f"acl: {PRINCIPAL_RULE}")
        return self._writer.apply(document_id, title=title, metadata=metadata, acl=acl)

    # --- delete ------------------------------------------------------------------------------------
    def delete(self, document_id: str, caller: Caller) -> None:
        """Mark the document ``deleting`` (it disappears from every read at once), stop its job if one runs,
        remove its chunks, then its row. A crash at any point is finished by ``recover()`` at the next start."""
        caller.require(Scope.WRITE)
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).visible(document_id, caller)
            if doc is None:
                raise NotFound(f"document {document_id} does not exist")
            _check_writable(doc, caller)
            doc.status = DocumentStatus.DELETING
        self.jobs.cancel(document_id)
        self._writer.remove(document_id)

    def delete_origin(self, origin: str) -> int:
        """Delete every document a source made (the source was removed); returns how many."""
        with self._sessions() as session:
            ids = [doc.id for doc in DocumentRepository(session).of_origin(origin)]
        for doc_id in ids:
            self._delete_quietly(doc_id)
        return len(ids)

    def _delete_quietly(self, document_id: str) -> None:
        """Remove a document this service decided is superseded (the caller's rights were checked already)."""
        with self._sessions.begin() as session:
            doc = DocumentRepository(session).get(document_id)
            if doc is None or doc.status == DocumentStatus.DELETING:
                return
            doc.status = DocumentStatus.DELETING
        self.jobs.cancel(document_id)
        try:
            self._writer.remove(document_id)
        except Exception:  # it stays "deleting", invisible; recover() finishes it
            log.exception("could not finish deleting document %s; the next start finishes it", document_id)

    # --- collections, consistency, counts ----------------------------------------------------------
    def configure_collection(self, name: str, *, redact_pii: bool) -> tuple[str, bool]:
        """Create a collection or change its settings (PII redaction applies to documents ingested after)."""
        for attempt in (1, 2):
            try:
                with self._sessions.begin() as session:
                    coll = CollectionRepository(session).ensure(name)
                    coll.redact_pii = redact_pii
                    return coll.name, coll.redact_pii
            except IntegrityError:  # an upload created the collection at the same moment: it exists now
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def active_job_counts(self) -> dict[str, int]:
        """Ingest jobs queued and running now (for the metrics)."""
        with self._sessions() as session:
            return JobRepository(session).active_counts()

    def inspect(self) -> Inconsistencies:
        """Differences between the metadata store and the chunk store."""
        return inspect(self._sessions, self._store)

    def recover(self, report: Inconsistencies | None = None) -> Inconsistencies:
        """Repair what a crash can leave (see app.ingest.consistency.recover)."""
        return recover(self._sessions, self._store, self._writer.remove, report)


def _check_writable(doc: Document, caller: Caller) -> None:
    """A readable document the caller may change: in a collection it may write, and made by clients. What a
    registered source or the folder ingest made is theirs to change (an admin may still do anything)."""
    caller.check_write(doc.collection)
    if doc.origin != ORIGIN_API and not caller.is_admin:
        what = "a registered source" if doc.origin.startswith("source:") else "the folder ingest"
        raise Forbidden(
            f"document {doc.id} is kept in step by {what}: change the source (or its files) instead, or ask an admin"
        )
