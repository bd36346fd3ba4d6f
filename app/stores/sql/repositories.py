"""Repositories hold the SQL. They take a session; services flush, the caller's edge commits."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.core.errors import BadInput
from app.stores.sql.models import (
    ApiKey,
    AuditEvent,
    Collection,
    Conversation,
    Document,
    DocumentReader,
    Job,
    Message,
    RateLimitHit,
    SyncJob,
    utcnow,
)


class CollectionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, name: str) -> Collection | None:
        return self.session.get(Collection, name)

    def ensure(self, name: str) -> Collection:
        found = self.session.get(Collection, name)
        if found is None:
            found = Collection(name=name)
            self.session.add(found)
            self.session.flush()
        return found

    def names(self) -> list[str]:
        return list(self.session.scalars(select(Collection.name).order_by(Collection.name)))


class DocumentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, document_id: str) -> Document | None:
        return self.session.get(Document, document_id)

    def visible(
        self, document_id: str, *, principals: list[str] | None, collections: list[str] | None
    ) -> Document | None:
        """The document, or None when it does not exist or the caller may not read it."""
        stmt = select(Document).where(Document.id == document_id)
        return self.session.scalar(visible_documents(stmt, principals, collections))

    def set_readers(self, document: Document, principals: list[str] | None) -> None:
        self.session.execute(delete(DocumentReader).where(DocumentReader.document_id == document.id))
        for p in dict.fromkeys(principals or []):
            self.session.add(DocumentReader(document_id=document.id, principal=p))
        document.acl = list(dict.fromkeys(principals)) if principals else None
        self.session.flush()

    def by_hash(self, collection: str, content_hash: str) -> Document | None:
        return self.session.scalar(
            select(Document).where(Document.collection == collection, Document.content_hash == content_hash)
        )

    def by_external_id(self, collection: str, external_id: str) -> Document | None:
        """The newest live document that came from this source object (e.g. ``s3://bucket/key``)."""
        return self.session.scalar(
            select(Document)
            .where(
                Document.collection == collection,
                Document.external_id == external_id,
                Document.status != "deleting",
            )
            .order_by(Document.created_at.desc(), Document.id.desc())
            .limit(1)
        )

    def with_external_prefix(
        self, collection: str, prefix: str, *, principals: list[str] | None = None
    ) -> list[Document]:
        """Live documents whose external id starts with ``prefix`` (those the principals may read), oldest
        first."""
        stmt = visible_documents(select(Document), principals, None).where(
            Document.collection == collection, Document.external_id.startswith(prefix, autoescape=True)
        )
        return list(self.session.scalars(stmt.order_by(Document.created_at, Document.id)))

    def add(self, document: Document) -> Document:
        self.session.add(document)
        self.session.flush()
        return document

    def delete(self, document: Document) -> None:
        self.session.delete(document)
        self.session.flush()

    def all_ids(self) -> set[str]:
        return set(self.session.scalars(select(Document.id)))

    def ids_with_status(self, status: str) -> set[str]:
        return set(self.session.scalars(select(Document.id).where(Document.status == status)))

    def indexed_counts(self) -> dict[str, int]:
        rows = self.session.execute(select(Document.id, Document.chunk_count).where(Document.status == "indexed"))
        return {doc_id: n for doc_id, n in rows}

    def page(
        self,
        *,
        collection: str | None,
        limit: int,
        cursor: str | None,
        principals: list[str] | None = None,
        collections: list[str] | None = None,
    ) -> tuple[list[Document], str | None]:
        stmt = visible_documents(select(Document), principals, collections)
        if collection is not None:
            stmt = stmt.where(Document.collection == collection)
        if cursor:
            created, last_id = _decode_cursor(cursor)
            stmt = stmt.where(
                or_(Document.created_at < created, and_(Document.created_at == created, Document.id < last_id))
            )
        stmt = stmt.order_by(Document.created_at.desc(), Document.id.desc()).limit(limit + 1)
        rows = list(self.session.scalars(stmt))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return rows, next_cursor


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.session.get(Job, job_id)

    def latest_for(self, document_id: str) -> Job | None:
        return self.session.scalar(
            select(Job).where(Job.document_id == document_id).order_by(Job.created_at.desc()).limit(1)
        )

    def active_counts(self) -> dict[str, int]:
        """Queued and running jobs, by status (the index on status)."""
        counts = {"queued": 0, "running": 0}
        rows = self.session.execute(
            select(Job.status, func.count()).where(Job.status.in_(tuple(counts))).group_by(Job.status)
        )
        counts.update({status: n for status, n in rows})
        return counts

    def active_updates(self) -> int:
        """Content replacements running now (their lease not yet expired)."""
        stmt = select(Job.id).where(Job.kind == "update", Job.status == "running", Job.lease_until >= utcnow())
        return len(list(self.session.scalars(stmt.limit(1))))

    def fail_interrupted_updates(self) -> None:
        self.session.execute(
            update(Job)
            .where(Job.kind == "update", Job.status == "running", Job.lease_until < utcnow())
            .values(
                status="failed",
                lease_until=None,
                error="the replacement was interrupted; the previous version is still served: upload it again",
            )
        )

    def claim_next(self, lease: timedelta) -> Job | None:
        """Take the oldest queued job (or one whose worker's lease ran out)."""
        now = utcnow()
        stmt = (
            select(Job.id)
            .where(Job.kind == "ingest")  # replacements run inline; a crashed one is cleaned by recover()
            .where(
                or_(
                    and_(Job.status == "queued", or_(Job.run_after.is_(None), Job.run_after <= now)),
                    and_(Job.status == "running", Job.lease_until < now),
                )
            )
            .order_by(Job.created_at)
            .limit(1)
        )
        if self.session.bind is not None and self.session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        job_id = self.session.scalar(stmt)
        if job_id is None:
            return None
        claimed = self.session.execute(
            update(Job)
            .where(Job.id == job_id, or_(Job.status == "queued", Job.lease_until < now))
            .values(
                status="running", lease_until=now + lease, attempts=Job.attempts + 1, updated_at=now, run_after=None
            )
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        self.session.flush()
        job = self.session.get(Job, job_id)
        if job is not None:
            self.session.refresh(job)
        return job


class ConversationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, conversation_id: str) -> Conversation | None:
        return self.session.get(Conversation, conversation_id)

    def create(self, collection: str | None, owner: list[str] | None) -> Conversation:
        conv = Conversation(collection=collection, owner=owner)
        self.session.add(conv)
        self.session.flush()
        return conv

    def messages(self, conversation_id: str, limit: int = 20) -> list[Message]:
        rows = self.session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.ordinal.desc())
            .limit(limit)
        )
        return list(reversed(list(rows)))

    def append(self, conversation_id: str, role: str, content: str, citations: list[Any] | None = None) -> Message:
        last = self.session.scalar(
            select(Message.ordinal)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.ordinal.desc())
            .limit(1)
        )
        msg = Message(
            conversation_id=conversation_id,
            ordinal=(last or 0) + 1,
            role=role,
            content=content,
            citations=citations,
        )
        self.session.add(msg)
        self.session.flush()
        return msg


def visible_documents(stmt, principals: list[str] | None, collections: list[str] | None):  # type: ignore[no-untyped-def]
    """Access control as SQL: documents without readers are public; others need a shared principal.
    Documents being deleted are already gone for every reader."""
    stmt = stmt.where(Document.status != "deleting")
    if collections is not None:
        stmt = stmt.where(Document.collection.in_(collections))
    if principals is not None:
        restricted = select(DocumentReader.document_id).where(DocumentReader.document_id == Document.id).exists()
        allowed = (
            select(DocumentReader.document_id)
            .where(DocumentReader.document_id == Document.id, DocumentReader.principal.in_(principals))
            .exists()
        )
        stmt = stmt.where(or_(~restricted, allowed))
    return stmt


def _encode_cursor(created: datetime, doc_id: str) -> str:
    raw = f"{created.astimezone(UTC).isoformat()}|{doc_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, doc_id = raw.split("|", 1)
        return datetime.fromisoformat(created), doc_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadInput("cursor is not valid: pass the next_cursor value from a previous page") from exc


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def any_active(self) -> bool:
        return self.session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None

    def by_hash(self, key_hash: str) -> ApiKey | None:
        return self.session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))

    def get(self, key_id: str) -> ApiKey | None:
        return self.session.get(ApiKey, key_id)

    def add(self, key: ApiKey) -> ApiKey:
        self.session.add(key)
        self.session.flush()
        return key

    def all(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


class AuditRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, event: AuditEvent) -> None:
        self.session.add(event)
        self.session.flush()

    def query(self, *, since: datetime | None, action: str | None, limit: int) -> list[AuditEvent]:
        stmt = select(AuditEvent)
        if since is not None:
            stmt = stmt.where(AuditEvent.at >= since)
        if action is not None:
            stmt = stmt.where(AuditEvent.action == action)
        return list(self.session.scalars(stmt.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)))

    def prune(self, older_than: datetime) -> int:
        result = self.session.execute(delete(AuditEvent).where(AuditEvent.at < older_than))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class SyncJobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, job: SyncJob) -> SyncJob:
        self.session.add(job)
        self.session.flush()
        return job

    def get(self, sync_id: str) -> SyncJob | None:
        return self.session.get(SyncJob, sync_id)


class RateLimitRepository:
    """Per-key requests of the last minute, shared by every instance through the metadata database."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self, key_id: str) -> None:
        """Serialize the count-then-add of one key across instances (Postgres: a transaction advisory lock)."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"ks-rate:{key_id}"))))

    def since(self, key_id: str, start: float) -> tuple[int, float | None]:
        """(requests of ``key_id`` after ``start``, the time of the oldest of them)."""
        n, oldest = self.session.execute(
            select(func.count(), func.min(RateLimitHit.at)).where(
                RateLimitHit.key_id == key_id, RateLimitHit.at > start
            )
        ).one()
        return int(n), oldest

    def add(self, key_id: str, at: float) -> None:
        self.session.add(RateLimitHit(key_id=key_id, at=at))

    def prune(self, before: float) -> None:
        self.session.execute(delete(RateLimitHit).where(RateLimitHit.at <= before))
