"""Documents and jobs: uploads, reads, patches."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.schemas.common import COLLECTION_PATTERN, Metadata, Principal, aware


class JobRead(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress_done: int = Field(description="Chunks embedded and stored so far.")
    progress_total: int = Field(description="Chunks to embed (0 until the document is parsed).")
    attempts: int
    error: str | None = None


class DocumentRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b",
                    "title": "Employee handbook",
                    "collection": "hr",
                    "status": "indexed",
                    "error": None,
                    "content_type": "application/pdf",
                    "metadata": {"dept": "hr"},
                    "chunk_count": 42,
                    "size_bytes": 183220,
                    "filename": "handbook.pdf",
                    "created_at": "2026-11-29T10:00:00Z",
                    "updated_at": "2026-11-29T10:00:03Z",
                }
            ]
        }
    )

    id: str
    title: str
    collection: str
    status: Literal["queued", "processing", "indexed", "failed"]
    error: str | None = Field(None, description="Why the document failed, when status is 'failed'.")
    content_type: str
    metadata: dict[str, Any]
    acl: list[str] | None = Field(
        None, description="Principals allowed to read; null: everyone who can read the collection."
    )
    external_id: str | None = Field(None, description="Your id for the document, if you gave one.")
    redactions: int | None = Field(None, description="PII matches removed at ingest; null when redaction was off.")
    chunk_count: int
    size_bytes: int
    filename: str | None = None
    created_at: datetime
    updated_at: datetime
    job: JobRead | None = Field(None, description="The ingest job, on upload replies.")
    outcome: Literal["created", "queued", "replaced", "unchanged"] | None = Field(
        None,
        description="On upload and replace replies: what the upload did. 'replaced': the content, access list, "
        "metadata or title changed in place; 'unchanged': the same document was already there.",
    )

    _aware_created = field_validator("created_at", "updated_at")(aware)


class DocumentPage(BaseModel):
    items: list[DocumentRead]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null at the end.")


class TextDocumentCreate(BaseModel):
    """A document sent as JSON text instead of a file."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Leave policy",
                    "text": "Employees receive 10 days of paid leave after six months.",
                    "collection": "hr",
                    "metadata": {"dept": "hr", "year": 2026},
                }
            ]
        },
    )

    title: str | None = Field(None, max_length=512)
    text: str = Field(
        ...,
        min_length=1,
        pattern=r"[^\s\x00-\x1f]",  # some character that is neither a space nor a control character
        description="The document's text (plain text or Markdown).",
    )
    format: Literal["text", "markdown"] = "text"
    collection: str = Field("default", pattern=COLLECTION_PATTERN)
    metadata: Metadata = Field(default_factory=dict)
    acl: list[Principal] | None = Field(
        None,
        max_length=100,
        description='Principals allowed to read, e.g. ["group:hr"]; null or [] for everyone who may read the '
        "collection. On a replacement (same external_id), an omitted acl keeps the document's own.",
    )
    external_id: str | None = Field(
        None,
        max_length=256,
        description="Your id for the document: an upload with the same external_id in the same collection "
        "replaces its content atomically.",
    )


class DocumentPatch(BaseModel):
    """Fields to change; omitted fields stay as they are. `acl: null` makes the document readable by all."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"acl": ["group:hr", "user:alice"]}]})

    title: str | None = Field(None, min_length=1, max_length=512)
    metadata: Metadata | None = None
    acl: list[Principal] | None = Field(None, max_length=100)


class SourceRead(BaseModel):
    char_start: int = Field(description="Offset of the chunk's first character in the parsed document text.")
    char_end: int
    page: int | None = Field(None, description="1-based page number (PDF).")
    heading_path: list[str] = Field(default_factory=list, description="Headings above the chunk, outermost first.")


class ChunkRead(BaseModel):
    chunk_id: str
    document_id: str
    ordinal: int
    text: str
    source: SourceRead


class ChunkList(BaseModel):
    items: list[ChunkRead]


class JobDetail(JobRead):
    document_id: str
    collection: str
    kind: str = Field(description="What the job does: 'ingest' (a new document) or 'update' (a replacement).")


class JobPage(BaseModel):
    items: list[JobDetail]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
