"""SQLAlchemy 2 models for the metadata store (SQLite in the embedded default, Postgres in production)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.core.states import DocumentStatus, JobKind, JobStatus, SyncStatus

ORIGIN_API = "api"
ORIGIN_FOLDER = "folder"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class Collection(Base):
    __tablename__ = "collections"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Remove e-mail addresses, phone/card/My Number numbers before chunks are stored or embedded.
    redact_pii: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def dedup_key(
    origin: str, owner_key: str | None, content_hash: str, acl: list[str] | None, external_id: str | None
) -> str:
    """What makes two uploads the same document: where it came from, who uploaded it, its bytes, who may read it
    and the client's own id. The owner is part of it so that one key's upload never collides with (and so never
    reveals) a document another key made that this one cannot read."""
    readers = sorted(set(acl)) if acl else None
    raw = json.dumps([origin, owner_key, content_hash, readers, external_id], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection", "dedup_key", name="uq_documents_collection_dedup_key"),
        Index("ix_documents_collection_created", "collection", "created_at", "id"),
        Index("ix_documents_collection_hash", "collection", "content_hash"),
        Index("ix_documents_collection_external", "collection", "external_id"),
        Index("ix_documents_origin", "origin"),
        Index("ix_documents_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection: Mapped[str] = mapped_column(ForeignKey("collections.name"), index=False)
    title: Mapped[str] = mapped_column(String(512))
    filename: Mapped[str | None] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    acl: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(256))
    # Who made it: "api" (clients), "folder" (the CLI's folder ingest) or "source:<id>" (a registered source).
    # A sync only ever sees and changes documents of its own origin.
    origin: Mapped[str] = mapped_column(String(64), default=ORIGIN_API, server_default=ORIGIN_API)
    # The key that uploaded it ("admin" for KS_ADMIN_KEY, None for the CLI and the loopback development mode).
    owner_key: Mapped[str | None] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.QUEUED)
    error: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    # How many PII matches were replaced at ingest (None: redaction was off).
    redactions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    jobs: Mapped[list[Job]] = relationship(back_populates="document", cascade="all, delete-orphan")
    readers: Mapped[list[DocumentReader]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class DocumentReader(Base):
    """One row per principal in a document's ACL, so visibility is a SQL predicate on every backend."""

    __tablename__ = "document_readers"
    __table_args__ = (Index("ix_document_readers_principal", "principal", "document_id"),)

    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    principal: Mapped[str] = mapped_column(String(256), primary_key=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default=JobKind.INGEST)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who holds the lease (a random token per claim): a worker that lost its lease stops when it sees another's.
    lease_holder: Mapped[str | None] = mapped_column(String(32))
    # A retried job waits until then (backoff).
    run_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    document: Mapped[Document] = relationship(back_populates="jobs")


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection: Mapped[str | None] = mapped_column(String(128))
    # The key and the principals (its own, or those it acted for) that started it: only that same key acting
    # for those same principals may continue it.
    key_id: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", order_by="Message.ordinal"
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("conversation_id", "ordinal", name="uq_messages_conversation_ordinal"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    # sha256 of the secret; the secret itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    principals: Mapped[list[str]] = mapped_column(JSON)
    collections: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"), Index("ix_audit_events_action_at", "action", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    key_id: Mapped[str | None] = mapped_column(String(32))
    principals: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    target_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(String(512))
    # The client's address (from X-Forwarded-For only through the trusted proxies) and the request id.
    client_addr: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))


class SyncJob(Base):
    """One sync of an external source (an S3 prefix) into a collection: its state, counts and failures."""

    __tablename__ = "sync_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(16), default="s3")
    source_id: Mapped[str | None] = mapped_column(String(32))
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(1024), default="")
    collection: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=SyncStatus.QUEUED)
    # scanned / new / modified / unchanged / deleted / failed
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # One line per failed object, "s3://bucket/key: reason" (the first 100).
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Why the whole sync failed (e.g. the bucket does not exist).
    error: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Source(Base):
    """A place documents are synced from, registered by an admin: which bucket and prefix, into which
    collection, readable by whom. Callers of a sync name the source, never the bucket."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="s3")
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(1024), default="")
    collection: Mapped[str] = mapped_column(String(128))
    acl: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @property
    def origin(self) -> str:
        return f"source:{self.id}"


class RateLimitHit(Base):
    """One request of an API key, kept for a minute: the moving window every instance counts in."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_key_at", "key_id", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    key_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)
