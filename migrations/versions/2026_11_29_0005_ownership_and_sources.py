"""ownership: document origin, owner key and dedup key; conversation owner key; job lease holder; audit client
address and request id; sources registered by an admin

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:00:00.000000
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _dedup_key(content_hash: str, acl: object, external_id: str | None) -> str:
    # the same formula as app.stores.sql.models.dedup_key, frozen here as it was when this migration was written
    readers = sorted(set(acl)) if isinstance(acl, list) and acl else None
    raw = json.dumps(["api", None, content_hash, readers, external_id], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=64), nullable=False, server_default="api"))
        batch.add_column(sa.Column("owner_key", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("dedup_key", sa.String(length=64), nullable=True))
    docs = sa.table(
        "documents",
        sa.column("id", sa.String),
        sa.column("content_hash", sa.String),
        sa.column("acl", sa.JSON),
        sa.column("external_id", sa.String),
        sa.column("dedup_key", sa.String),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(docs.c.id, docs.c.content_hash, docs.c.acl, docs.c.external_id)).all()
    for doc_id, content_hash, acl, external_id in rows:
        conn.execute(
            docs.update().where(docs.c.id == doc_id).values(dedup_key=_dedup_key(content_hash, acl, external_id))
        )
    with op.batch_alter_table("documents") as batch:
        batch.alter_column("dedup_key", existing_type=sa.String(length=64), nullable=False)
        batch.drop_constraint("uq_documents_collection_content_hash", type_="unique")
        batch.create_unique_constraint("uq_documents_collection_dedup_key", ["collection", "dedup_key"])
        batch.create_index("ix_documents_collection_hash", ["collection", "content_hash"])
        batch.create_index("ix_documents_collection_external", ["collection", "external_id"])
        batch.create_index("ix_documents_origin", ["origin"])

    with op.batch_alter_table("conversations") as batch:
        # Conversations started before this revision have no owner key: only a caller without a key (the
        # loopback development mode) can continue them. Failing closed is the point.
        batch.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))

    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_holder", sa.String(length=32), nullable=True))

    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("client_addr", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))

    op.create_table(
        "sources",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("prefix", sa.String(length=1024), nullable=False),
        sa.Column("collection", sa.String(length=128), nullable=False),
        sa.Column("acl", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sources_name")),
    )
    with op.batch_alter_table("sync_jobs") as batch:
        batch.add_column(sa.Column("source_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_jobs") as batch:
        batch.drop_column("source_id")
    op.drop_table("sources")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("request_id")
        batch.drop_column("client_addr")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_holder")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("key_id")
    conn = op.get_bind()
    shared = conn.execute(
        sa.text(
            "SELECT count(*) FROM documents d JOIN documents e ON d.collection = e.collection "
            "AND d.content_hash = e.content_hash AND d.id < e.id"
        )
    ).scalar()
    if shared:
        # Revision 0004 allowed one document per content and collection; deleting the others would lose data.
        raise RuntimeError(
            f"cannot downgrade below 0005: {shared} pairs of documents share their content within a collection "
            "(under different access lists or owners); delete the extra ones first"
        )
    with op.batch_alter_table("documents") as batch:
        batch.drop_index("ix_documents_origin")
        batch.drop_index("ix_documents_collection_external")
        batch.drop_index("ix_documents_collection_hash")
        batch.drop_constraint("uq_documents_collection_dedup_key", type_="unique")
        batch.create_unique_constraint("uq_documents_collection_content_hash", ["collection", "content_hash"])
        batch.drop_column("dedup_key")
        batch.drop_column("owner_key")
        batch.drop_column("origin")
