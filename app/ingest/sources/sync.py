"""Sync a registered source's prefix into its collection, counted as Bedrock Knowledge Bases' ingestion jobs count.

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

from app.access.caller import SYSTEM
from app.core.errors import AppError, NotFound, Unprocessable
from app.core.states import DocumentStatus, SyncStatus
from app.ingest.payload import Payload
from app.ingest.service import IngestService
from app.ingest.upload import Outcome, Upload
from app.stores.sql.models import Document, Source, SyncJob, utcnow
from app.stores.sql.repositories import DocumentRepository, SourceRepository, SyncJobRepository

log = logging.getLogger(__name__)

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
    etag: str | None
    acl: list[str] | None

    @classmethod
    def of(cls, doc: Document) -> _Known:
        return cls(doc.id, doc.status, (doc.metadata_ or {}).get("etag"), doc.acl)


class SyncService:
    """Syncs registered sources through the ingest service's one way in (``upsert``), as the service itself:
    the documents it makes carry the source's origin, so a sync sees, changes and deletes only its own."""

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
    def sync(self, source: Source, progress: SyncProgress | None = None) -> SyncReport:
        """Make the source's collection match its prefix. New documents get the source's access list, and a
        changed access list of the source is applied to the documents it made."""
        listed = {self._source.uri(source.bucket, o.key): o for o in self._source.list(source.bucket, source.prefix)}
        known, stale = self._known(source.origin)
        gone = [(uri, doc.id) for uri, doc in known.items() if uri not in listed]
        report, done, total = SyncReport(), 0, len(listed) + len(gone)
        for uri, obj in listed.items():
            report.scanned += 1
            try:
                self._sync_object(source, obj, uri, known.get(uri), report)
            except Exception as exc:  # one object never stops the sync
                report.fail(uri, _reason(exc, uri))
            done += 1
            if progress is not None:
                progress(done, total, report)
        for uri, doc_id in gone:
            try:
                self._ingest.delete(doc_id, SYSTEM)
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

    def _known(self, origin: str) -> tuple[dict[str, _Known], list[str]]:
        """Documents this source made, by URI; and the ids of older duplicates (left by two syncs that raced)."""
        known: dict[str, _Known] = {}
        stale: list[str] = []
        with self._sessions() as session:
            for doc in DocumentRepository(session).of_origin(origin):
                uri = doc.external_id or ""
                if uri in known:  # oldest first: the newer one wins
                    stale.append(known[uri].id)
                known[uri] = _Known.of(doc)
        return known, stale

    def _sync_object(
        self, source: Source, obj: SourceObject, uri: str, existing: _Known | None, report: SyncReport
    ) -> None:
        if len(uri) > EXTERNAL_ID_MAX:
            raise Unprocessable(f"the key is too long: at most {EXTERNAL_ID_MAX} characters with the bucket")
        acl = source.acl or None
        if existing is not None and existing.status == DocumentStatus.INDEXED and existing.etag == obj.etag:
            if set(existing.acl or ()) != set(acl or ()):  # the admin changed the source's access list
                self._ingest.update(existing.id, SYSTEM, acl=acl)
            report.unchanged += 1  # the same version: not even downloaded
            return
        if obj.size > self._max_bytes:
            raise Unprocessable(f"the object is {obj.size} bytes; the limit is {self._max_bytes} (KS_MAX_UPLOAD_MB)")
        data, etag = self._source.fetch(source.bucket, obj.key, self._max_bytes, self._spool)
        name = self._source.name
        upload = Upload(
            data,
            collection=source.collection,
            filename=obj.key.rsplit("/", 1)[-1],
            metadata={"source": name, f"{name}_uri": uri, "etag": etag},
            acl=acl,
            external_id=uri,
        )
        try:
            result = self._ingest.upsert(upload, SYSTEM, origin=source.origin, wait=True)
        finally:
            data.discard()  # a spooled body the blob store did not take
        if result.outcome == Outcome.CREATED:
            report.new += 1
        elif result.outcome == Outcome.REPLACED and result.content_changed:
            report.modified += 1
        else:  # the same bytes (perhaps under a new ETag), or being indexed by a worker right now
            report.unchanged += 1

    def _delete_quietly(self, doc_id: str) -> None:
        try:
            self._ingest.delete(doc_id, SYSTEM)
        except NotFound:
            pass
        except Exception:
            log.exception("could not delete document %s during a sync; the next sync tries again", doc_id)

    # --- sync jobs (persisted, so any instance can answer for them) --------------------------------
    def start(self, source: Source, key_id: str | None = None) -> SyncJob:
        """Record a queued sync of a registered source; ``run`` does it."""
        with self._sessions.begin() as session:
            job = SyncJobRepository(session).add(
                SyncJob(
                    source=source.kind,
                    source_id=source.id,
                    bucket=source.bucket,
                    prefix=source.prefix,
                    collection=source.collection,
                    status=SyncStatus.QUEUED,
                    counts=SyncReport().counts(),
                    errors=[],
                    key_id=key_id,
                )
            )
        return job

    def get(self, sync_id: str) -> SyncJob | None:
        with self._sessions() as session:
            return SyncJobRepository(session).get(sync_id)

    def run(self, sync_id: str) -> SyncJob | None:
        """Run a recorded sync to its end, saving its counts as it goes (at most once a second) and at the end."""
        job = self._save(sync_id, status=SyncStatus.RUNNING)
        if job is None:
            return None
        with self._sessions() as session:
            source = SourceRepository(session).get(job.source_id or "")
        if source is None:
            return self._save(sync_id, status=SyncStatus.FAILED, error="the source was removed", finished_at=utcnow())
        saved = [time.monotonic()]

        def progress(done: int, total: int, report: SyncReport) -> None:
            if time.monotonic() - saved[0] >= 1.0:
                saved[0] = time.monotonic()
                self._save(sync_id, counts=report.counts(), errors=list(report.errors))

        try:
            report = self.sync(source, progress)
        except AppError as exc:
            return self._save(sync_id, status=SyncStatus.FAILED, error=exc.detail, finished_at=utcnow())
        except Exception as exc:
            log.exception("sync %s failed", sync_id)
            return self._save(
                sync_id, status=SyncStatus.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=utcnow()
            )
        return self._save(
            sync_id,
            status=SyncStatus.SUCCEEDED,
            counts=report.counts(),
            errors=list(report.errors),
            finished_at=utcnow(),
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
