"""Sync a source prefix into a collection, counted as Bedrock Knowledge Bases' ingestion jobs count.

Each object becomes one document whose ``external_id`` is its URI (``s3://bucket/key``) and whose metadata holds
``{"source": "s3", "s3_uri": ..., "etag": ...}``. A sync lists the whole prefix first, then for each object:

- no document yet: it is ingested (**new**);
- same ETag, or a new ETag over the same bytes: **unchanged** (a same ETag saves the download);
- other bytes: the document's content is replaced in place, atomically (**modified**);
- a document whose object is gone (or is no longer a supported type): deleted (**deleted**).

An object that cannot be fetched or indexed is **failed**, with its reason in ``errors``, and never stops the
sync. Nothing half-made stays: a failed new document is removed, a failed new version leaves the old one in
place, and the next sync tries again. "Folder" markers and unsupported types (images...) are skipped: neither
scanned nor counted. Only the listing failing (no such bucket, access denied) fails the sync, and then nothing
is deleted. A sync finished with failed objects still ``succeeded``, like a Bedrock job that is COMPLETE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import AppError, Conflict, NotFound, Unprocessable
from app.ingest.payload import Payload
from app.ingest.service import IngestService, Upload
from app.stores.sql.models import Document, SyncJob, utcnow
from app.stores.sql.repositories import DocumentRepository, SyncJobRepository

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})
MAX_ERRORS = 100  # failure lines kept per sync; the count covers them all
EXTERNAL_ID_MAX = 256  # documents.external_id


class SourceError(AppError):
    """The source could not be listed or read (the detail says what to fix)."""

    status, title = 502, "Source error"


@dataclass(frozen=True, slots=True)
class SourceObject:
    key: str
    etag: str
    size: int


class ObjectSource(Protocol):
    name: str

    def uri(self, bucket: str, key: str) -> str: ...
    def list(self, bucket: str, prefix: str) -> list[SourceObject]: ...
    def fetch(self, bucket: str, key: str, max_bytes: int, spool_dir: Path) -> tuple[Payload, str]: ...


@dataclass(slots=True)
class SyncReport:
    NAMES: ClassVar[tuple[str, ...]] = ("scanned", "new", "modified", "unchanged", "deleted", "failed")

    scanned: int = 0
    new: int = 0
    modified: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.NAMES}

    def line(self) -> str:
        """``scanned N, new N, modified N, unchanged N, deleted N, failed N``"""
        return ", ".join(f"{name} {n}" for name, n in self.counts().items())

    def fail(self, uri: str, reason: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{uri}: {reason}")


SyncProgress = Callable[[int, int, SyncReport], None]  # (objects done, objects to do, counts so far)


@dataclass(frozen=True, slots=True)
class _Known:
    """What a sync needs of a document it made earlier."""

    id: str
    status: str
    content_hash: str
    etag: str | None
    metadata: dict[str, Any]
    acl: list[str] | None

    @classmethod
    def of(cls, doc: Document) -> _Known:
        meta = dict(doc.metadata_ or {})
        return cls(doc.id, doc.status, doc.content_hash, meta.get("etag"), meta, doc.acl)


def replace_document(ingest: IngestService, document_id: str, upload: Upload) -> Document:
    """Swap a document's content for its object's new version, in place and atomically: it keeps its id and
    access list, searches see the old version until every new chunk is indexed, and a new version that fails
    (or whose content another document already has) raises and leaves the old one."""
    return ingest.replace(document_id, upload)


class SyncService:
    def __init__(
        self,
        ingest: IngestService,
        sessions: sessionmaker[Session],
        source: ObjectSource,
        *,
        max_object_bytes: int,
        spool_dir: Path,
    ) -> None:
        self._ingest = ingest
        self._sessions = sessions
        self._source = source
        self._max_bytes = max_object_bytes
        self._spool = spool_dir

    # --- one sync --------------------------------------------------------------------------------
    def sync(
        self,
        bucket: str,
        prefix: str,
        collection: str,
        caller_acl: list[str] | None = None,
        progress: SyncProgress | None = None,
        *,
        principals: list[str] | None = None,
    ) -> SyncReport:
        """Make the collection match the prefix. ``caller_acl`` is the access list of new documents (a changed
        document keeps its own); with ``principals``, documents they may not read are left alone."""
        listed = {self._source.uri(bucket, o.key): o for o in self._source.list(bucket, prefix)}
        known, stale = self._known(collection, self._source.uri(bucket, prefix), principals)
        gone = [(uri, doc.id) for uri, doc in known.items() if uri not in listed]
        report, done, total = SyncReport(), 0, len(listed) + len(gone)
        for uri, obj in listed.items():
            report.scanned += 1
            try:
                self._sync_object(bucket, obj, uri, collection, known.get(uri), caller_acl, report)
            except Exception as exc:  # one object never stops the sync
                report.fail(uri, _reason(exc, uri))
            done += 1
            if progress is not None:
                progress(done, total, report)
        for uri, doc_id in gone:
            try:
                self._ingest.delete(doc_id)
                report.deleted += 1
            except NotFound:
                pass  # deleted meanwhile
            except Exception as exc:
                report.fail(uri, f"the object is gone but its document could not be deleted: {_reason(exc, uri)}")
            done += 1
            if progress is not None:
                progress(done, total, report)
        for doc_id in stale:
            self._delete_quietly(doc_id)
        return report

    def _known(self, collection: str, base: str, principals: list[str] | None) -> tuple[dict[str, _Known], list[str]]:
        """Documents made by earlier syncs under the prefix, by URI; and the ids of older duplicates (left by two
        syncs that raced over a changing object)."""
        known: dict[str, _Known] = {}
        stale: list[str] = []
        with self._sessions() as session:
            for doc in DocumentRepository(session).with_external_prefix(collection, base, principals=principals):
                uri = doc.external_id or ""
                if uri in known:  # oldest first: the newer one wins
                    stale.append(known[uri].id)
                known[uri] = _Known.of(doc)
        return known, stale

    def _sync_object(
        self,
        bucket: str,
        obj: SourceObject,
        uri: str,
        collection: str,
        existing: _Known | None,
        caller_acl: list[str] | None,
        report: SyncReport,
    ) -> None:
        if len(uri) > EXTERNAL_ID_MAX:
            raise Unprocessable(f"the key is too long: at most {EXTERNAL_ID_MAX} characters with the bucket")
        if existing is not None and existing.status != "indexed":
            self._delete_quietly(existing.id)  # an earlier attempt that never finished: start again
            existing = None
        if existing is not None and existing.etag == obj.etag:
            report.unchanged += 1
            return
        if obj.size > self._max_bytes:
            raise Unprocessable(f"the object is {obj.size} bytes; the limit is {self._max_bytes} (KS_MAX_UPLOAD_MB)")
        data, etag = self._source.fetch(bucket, obj.key, self._max_bytes, self._spool)
        try:
            if existing is not None and data.sha256 == existing.content_hash:
                self._ingest.update(existing.id, metadata={**existing.metadata, "etag": etag})  # e.g. re-uploaded
                report.unchanged += 1
                return
            name = self._source.name
            base_meta = existing.metadata if existing is not None else {}
            upload = Upload(
                data,
                collection=collection,
                filename=obj.key.rsplit("/", 1)[-1],
                metadata={**base_meta, "source": name, f"{name}_uri": uri, "etag": etag},
                acl=existing.acl if existing is not None else caller_acl,
                external_id=uri,
            )
            if existing is None:
                if self._index(upload) is None:
                    report.unchanged += 1
                else:
                    report.new += 1
            else:
                replace_document(self._ingest, existing.id, upload)
                report.modified += 1
        finally:
            data.discard()  # a spooled body the blob store did not take

    def _index(self, upload: Upload) -> Document | None:
        """Submit and run the ingest; a document that does not end up indexed is removed and raised. None: a
        concurrent sync has just indexed the same object."""
        submitted = self._ingest.submit(upload)
        if not submitted.created:
            other = submitted.document
            if other.external_id == upload.external_id:
                return None
            raise Conflict(
                f"the same content is already in collection {upload.collection!r} as document {other.id} "
                f"({other.external_id or 'uploaded directly'}); identical files are stored once"
            )
        assert submitted.job is not None
        doc = self._ingest.run_job(submitted.job.id)
        if doc.status != "indexed":
            self._delete_quietly(doc.id)
            if doc.status == "queued":  # a transient failure (store or model briefly unavailable)
                raise Unprocessable(f"could not be indexed now ({doc.error}); the next sync tries again")
            raise Unprocessable(doc.error or "the document could not be indexed")
        return doc

    def _delete_quietly(self, doc_id: str) -> None:
        try:
            self._ingest.delete(doc_id)
        except NotFound:
            pass
        except Exception:
            log.exception("could not delete document %s during a sync; the next sync tries again", doc_id)

    # --- sync jobs (persisted, so any instance can answer for them) --------------------------------
    def start(self, bucket: str, prefix: str, collection: str, key_id: str | None = None) -> SyncJob:
        """Record a queued sync; ``run`` does it."""
        with self._sessions.begin() as session:
            job = SyncJobRepository(session).add(
                SyncJob(
                    source=self._source.name,
                    bucket=bucket,
                    prefix=prefix,
                    collection=collection,
                    status="queued",
                    counts=SyncReport().counts(),
                    errors=[],
                    key_id=key_id,
                )
            )
        return job

    def get(self, sync_id: str) -> SyncJob | None:
        with self._sessions() as session:
            return SyncJobRepository(session).get(sync_id)

    def run(self, sync_id: str, *, acl: list[str] | None = None, principals: list[str] | None = None) -> SyncJob | None:
        """Run a recorded sync to its end, saving its counts as it goes (at most once a second) and at the end."""
        job = self._save(sync_id, status="running")
        if job is None:
            return None
        saved = [time.monotonic()]

        def progress(done: int, total: int, report: SyncReport) -> None:
            if time.monotonic() - saved[0] >= 1.0:
                saved[0] = time.monotonic()
                self._save(sync_id, counts=report.counts(), errors=list(report.errors))

        try:
            report = self.sync(job.bucket, job.prefix, job.collection, acl, progress, principals=principals)
        except AppError as exc:
            return self._save(sync_id, status="failed", error=exc.detail, finished_at=utcnow())
        except Exception as exc:
            log.exception("sync %s failed", sync_id)
            return self._save(sync_id, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=utcnow())
        return self._save(
            sync_id, status="succeeded", counts=report.counts(), errors=list(report.errors), finished_at=utcnow()
        )

    def _save(self, sync_id: str, **values: Any) -> SyncJob | None:
        with self._sessions.begin() as session:
            job = SyncJobRepository(session).get(sync_id)
            if job is None:
                return None
            for name, value in values.items():
                setattr(job, name, value)
        return job


def _reason(exc: Exception, uri: str) -> str:
    if isinstance(exc, AppError):
        return exc.detail
    log.error("sync of %s failed", uri, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"
