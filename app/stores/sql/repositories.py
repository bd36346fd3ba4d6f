"""Repositories hold the SQL. Each takes a session and only flushes; whoever opened the session decides.

The rule, as the code follows it: a **read** at the HTTP edge runs in a request-scoped session
(``app.api.deps.ReadSessionDep``) handed to the service; a **write** is a unit of work the service opens itself
with ``sessions.begin()`` and commits when the block ends, because an ingest spans several of them (record →
index → publish), each of which must be durable before the next starts.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app.core.errors import BadInput
from app.core.states import DocumentStatus, JobKind, JobStatus
from app.stores.sql.models import (
    ApiKey,
    AuditEvent,
    Base,
    Collection,
    Conversation,
    Document,
    DocumentReader,
    Job,
    Message,
    RateLimitHit,
    Source,
    SyncJob,
    utcnow,
)

M = TypeVar("M", bound=Base)
S = TypeVar("S", bound=Select)  # any select: of documents, or of jobs joined with them


class Reader(Protocol):
    """Whose view a query takes: None means unrestricted (every principal, every collection)."""

    @property
    def principals(self) -> list[str] | None: ...

    @property
    def collections(self) -> list[str] | None: ...


class Repository(Generic[M]):
    """get / add / delete for one model; subclasses add their own queries."""

    model: type[M]

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, id_: Any) -> M | None:
        return self.session.get(self.model, id_)

    def add(self, row: M) -> M:
        self.session.add(row)
        self.session.flush()
        return row

    def delete(self, row: M) -> None:
        self.session.delete(row)
        self.session.flush()


def visible_documents(stmt: S, reader: Reader | None) -> S:
    """Access control as SQL: documents without readers are public; others need a shared principal.
    Documents being deleted are already gone for every reader."""
    stmt = stmt.where(Document.status != DocumentStatus.DELETING)
    if reader is None:
        return stmt
    if reader.collections is not None:
        stmt = stmt.where(Document.collection.in_(reader.collections))
    if reader.principals is not None:
        restricted = select(DocumentReader.document_id).where(DocumentReader.document_id == Document.id).exists()
        allowed = (
            select(DocumentReader.document_id)
            .where(DocumentReader.document_id == Document.id, DocumentReader.principal.in_(reader.principals))
            .exists()
        )
        stmt = stmt.where(or_(~restricted, allowed))
    return stmt


class CollectionRepository(Repository[Collection]):
    model = Collection

    def ensure(self, name: str) -> Collection:
        found = self.get(name)
        return found if found is not None else self.add(Collection(name=name))


class DocumentRepository(Repository[Document]):
    model = Document

    def visible(self, document_id: str, reader: Reader | None) -> Document | None:
        """The document, or None when it does not exist or the reader may not read it."""
        return self.session.scalar(visible_documents(select(Document).where(Document.id == document_id), reader))

    def set_readers(self, document: Document, principals: list[str] | None) -> None:
        self.session.execute(delete(DocumentReader).where(DocumentReader.document_id == document.id))
        for p in dict.fromkeys(principals or []):
            self.session.add(DocumentReader(document_id=document.id, principal=p))
        document.acl = list(dict.fromkeys(principals)) if principals else None
        self.session.flush()

    def with_external_id(self, collection: str, external_id: str, origin: str, reader: Reader | None) -> list[Document]:
        """Documents of this origin with this external id that the reader may read, newest first: a document the
        reader cannot read is never found, so it can neither be replaced nor be told apart from none."""
        stmt = select(Document).where(
            Document.collection == collection, Document.external_id == external_id, Document.origin == origin
        )
        return list(
            self.session.scalars(
                visible_documents(stmt, reader).order_by(Document.created_at.desc(), Document.id.desc())
            )
        )

    def same_content(self, collection: str, content_hash: str, reader: Reader | None) -> list[Document]:
        """Documents of the collection with these bytes that the reader may read, oldest first."""
        stmt = select(Document).where(Document.collection == collection, Document.content_hash == content_hash)
        return list(self.session.scalars(visible_documents(stmt, reader).order_by(Document.created_at, Document.id)))

    def by_dedup_key(self, collection: str, key: str) -> Document | None:
        return self.session.scalar(select(Document).where(Document.collection == collection, Document.dedup_key == key))

    def of_origin(self, origin: str) -> list[Document]:
        """Every live document a source made, oldest first (a sync sees its own documents only)."""
        stmt = select(Document).where(Document.origin == origin, Document.status != DocumentStatus.DELETING)
        return list(self.session.scalars(stmt.order_by(Document.created_at, Document.id)))

    def all_ids(self) -> set[str]:
        return set(self.session.scalars(select(Document.id)))

    def ids_with_status(self, status: str) -> set[str]:
        return set(self.session.scalars(select(Document.id).where(Document.status == status)))

    def indexed_counts(self) -> dict[str, int]:
        rows = self.session.execute(
            select(Document.id, Document.chunk_count).where(Document.status == DocumentStatus.INDEXED)
        )
        return {doc_id: n for doc_id, n in rows}

    def page(
        self, *, collection: str | None, limit: int, cursor: str | None, reader: Reader | None
    ) -> tuple[list[Document], str | None]:
        stmt = visible_documents(select(Document), reader)
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


class JobRepository(Repository[Job]):
    model = Job

    def latest_for(self, document_id: str) -> Job | None:
        return self.session.scalar(
            select(Job).where(Job.document_id == document_id).order_by(Job.created_at.desc()).limit(1)
        )

    def visible(self, job_id: str, reader: Reader | None) -> tuple[Job, Document] | None:
        """The job with its document, when the reader may read the document."""
        stmt = visible_documents(select(Job, Document).join(Document, Job.document_id == Document.id), reader)
        row = self.session.execute(stmt.where(Job.id == job_id)).first()
        return (row[0], row[1]) if row is not None else None

    def recent(
        self, reader: Reader | None, *, status: str | None, collection: str | None, limit: int
    ) -> list[tuple[Job, Document]]:
        stmt = visible_documents(select(Job, Document).join(Document, Job.document_id == Document.id), reader)
        if status is not None:
            stmt = stmt.where(Job.status == status)
        if collection is not None:
            stmt = stmt.where(Document.collection == collection)
        rows = self.session.execute(stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)).all()
        return [(job, doc) for job, doc in rows]

    def active_counts(self) -> dict[str, int]:
        """Queued and running jobs, by status (the index on status)."""
        counts = {JobStatus.QUEUED.value: 0, JobStatus.RUNNING.value: 0}
        rows = self.session.execute(
            select(Job.status, func.count()).where(Job.status.in_(tuple(counts))).group_by(Job.status)
        )
        counts.update({status: n for status, n in rows})
        return counts

    def active_updates(self) -> int:
        """Content replacements running now (their lease not yet expired)."""
        stmt = select(Job.id).where(
            Job.kind == JobKind.UPDATE, Job.status == JobStatus.RUNNING, Job.lease_until >= utcnow()
        )
        return len(list(self.session.scalars(stmt.limit(1))))

    def fail_interrupted_updates(self) -> None:
        self.session.execute(
            update(Job)
            .where(Job.kind == JobKind.UPDATE, Job.status == JobStatus.RUNNING, Job.lease_until < utcnow())
            .values(
                status=JobStatus.FAILED,
                lease_until=None,
                error="the replacement was interrupted; the previous version is still served: upload it again",
            )
        )

    def claimable(self) -> str | None:
        """The oldest ingest job that is due (queued, or running on a lease that ran out)."""
        now = utcnow()
        stmt = (
            select(Job.id)
            .where(Job.kind == JobKind.INGEST)  # replacements run inline; a crashed one is cleaned by recover()
            .where(
                or_(
                    and_(Job.status == JobStatus.QUEUED, or_(Job.run_after.is_(None), Job.run_after <= now)),
                    and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),
                )
            )
            .order_by(Job.created_at)
            .limit(1)
        )
        if self.session.bind is not None and self.session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return self.session.scalar(stmt)

    def claim(self, job_id: str, lease: timedelta, holder: str) -> Job | None:
        """Take the job if it is free (queued, or its lease ran out), counting the attempt: the lease is ours
        and ``holder`` names us. None when another worker holds it."""
        now = utcnow()
        claimed = self.session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                or_(Job.status == JobStatus.QUEUED, and_(Job.status == JobStatus.RUNNING, Job.lease_until < now)),
            )
            .values(
                status=JobStatus.RUNNING,
                lease_until=now + lease,
                lease_holder=holder,
                attempts=Job.attempts + 1,
                updated_at=now,
                run_after=None,
            )
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        self.session.flush()
        job = self.get(job_id)
        if job is not None:
            self.session.refresh(job)
        return job

    def renew(self, job_id: str, holder: str, lease: timedelta) -> bool:
        """Extend our lease; False when the job is no longer ours (another worker took it, or it ended)."""
        renewed = self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_holder == holder, Job.status == JobStatus.RUNNING)
            .values(lease_until=utcnow() + lease)
        )
        return renewed.rowcount == 1  # type: ignore[attr-defined]


class ConversationRepository(Repository[Conversation]):
    model = Conversation

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
            conversation_id=conversation_id, ordinal=(last or 0) + 1, role=role, content=content, citations=citations
        )
        self.session.add(msg)
        self.session.flush()
        return msg


class ApiKeyRepository(Repository[ApiKey]):
    model = ApiKey

    def any(self) -> bool:
        """Has any key ever been created (revoked ones included)?"""
        return self.session.scalar(select(ApiKey.id).limit(1)) is not None

    def by_hash(self, key_hash: str) -> ApiKey | None:
        return self.session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))

    def all(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


class AuditRepository(Repository[AuditEvent]):
    model = AuditEvent

    def query(self, *, since: datetime | None, action: str | None, limit: int) -> list[AuditEvent]:
        stmt = select(AuditEvent)
        if since is not None:
            stmt = stmt.where(AuditEvent.at >= since)
        if action is not None:
            stmt = stmt.where(AuditEvent.action == action)
        return list(self.session.scalars(stmt.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)))

    def add_many(self, events: list[dict[str, Any]]) -> None:
        """One INSERT for a batch of events (the audit journal's writer)."""
        self.session.execute(insert(AuditEvent), events)

    def holds(self, event: dict[str, Any]) -> bool:
        """Whether an event like this one (same moment, request, action, caller and status) is stored."""
        at = event["at"]
        stmt = select(AuditEvent.id).where(
            AuditEvent.at.between(at - timedelta(milliseconds=1), at + timedelta(milliseconds=1)),
            AuditEvent.action == event["action"],
            AuditEvent.status == event["status"],
        )
        for column in ("request_id", "key_id"):
            value = event.get(column)
            attr = getattr(AuditEvent, column)
            stmt = stmt.where(attr.is_(None) if value is None else attr == value)
        return self.session.scalar(stmt.limit(1)) is not None

    def prune(self, older_than: datetime) -> int:
        result = self.session.execute(delete(AuditEvent).where(AuditEvent.at < older_than))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class SourceRepository(Repository[Source]):
    model = Source

    def by_name(self, name: str) -> Source | None:
        return self.session.scalar(select(Source).where(Source.name == name))

    def all(self) -> list[Source]:
        return list(self.session.scalars(select(Source).order_by(Source.name)))


class SyncJobRepository(Repository[SyncJob]):
    model = SyncJob


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
