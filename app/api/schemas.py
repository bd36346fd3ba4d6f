"""Request and response models of the public REST contract (kept apart from the DB models)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
PRINCIPAL_PATTERN = r"^[a-z][a-z0-9_-]{0,31}:[^\s,]{1,200}$"
Principal = Annotated[str, Field(pattern=PRINCIPAL_PATTERN, examples=["group:hr"])]
FilterValue = str | int | float | bool | dict[str, list[str | int | float | bool]]


def _aware(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=UTC)


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
    redactions: int | None = Field(None, description="PII matches removed at ingest; null when redaction was off.")
    chunk_count: int
    size_bytes: int
    filename: str | None = None
    created_at: datetime
    updated_at: datetime
    job: JobRead | None = Field(None, description="The ingest job, on upload replies.")

    _aware_created = field_validator("created_at", "updated_at")(_aware)


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
    text: str = Field(..., min_length=1, description="The document's text (plain text or Markdown).")
    format: Literal["text", "markdown"] = "text"
    collection: str = Field("default", pattern=COLLECTION_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict)
    acl: list[Principal] | None = Field(None, description='Principals allowed to read, e.g. ["group:hr"].')
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
    metadata: dict[str, Any] | None = None
    acl: list[Principal] | None = None


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


class FusionRequest(BaseModel):
    """How a hybrid search merges its keyword and vector results; unset fields take the service's settings."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"method": "minmax", "weight_vector": 0.7}]}
    )

    method: Literal["rrf", "minmax", "zscore"] = Field(
        description="rrf: reciprocal rank fusion (ranks only); minmax / zscore: weighted sum of normalized scores."
    )
    k: int | None = Field(None, ge=1, le=10_000, description="RRF constant (rrf only); default KS_RRF_K.")
    weight_vector: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Weight of the vector scores, the keyword scores get 1 - it (minmax, zscore only); "
        "default KS_FUSION_WEIGHT_VECTOR.",
    )

    @model_validator(mode="after")
    def _fits_method(self) -> FusionRequest:
        if self.method == "rrf" and self.weight_vector is not None:
            raise ValueError("weight_vector applies to minmax and zscore, not to rrf (which uses k)")
        if self.method != "rrf" and self.k is not None:
            raise ValueError(f"k applies to rrf only, not to {self.method} (which uses weight_vector)")
        return self


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "query": "How many days of paid leave do new employees get?",
                    "top_k": 5,
                    "mode": "hybrid",
                    "collection": "hr",
                    "filters": {"dept": "hr", "year": {"in": [2025, 2026]}},
                }
            ]
        },
    )

    query: str = Field(..., min_length=1, max_length=2000)
    top_k: int = Field(10, ge=1, le=100)
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    filters: dict[str, FilterValue] = Field(
        default_factory=dict,
        description='Metadata filters: {"key": value} matches equal values, {"key": {"in": [v1, v2]}} any of them.',
    )
    mode: Literal["hybrid", "semantic", "keyword"] = "hybrid"
    fusion: FusionRequest | None = Field(
        None, description="Hybrid mode only: override how keyword and vector results are merged (KS_FUSION)."
    )
    per_document: int | None = Field(
        None,
        ge=1,
        le=100,
        description="At most this many chunks of one document (its best ones), so that one long document does "
        "not fill the results; default: no limit.",
    )

    @model_validator(mode="after")
    def _fusion_needs_hybrid(self) -> SearchRequest:
        if self.fusion is not None and self.mode != "hybrid":
            raise ValueError(f"fusion applies to mode 'hybrid' only, not to {self.mode!r}")
        return self

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must contain some text")
        return v

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if isinstance(value, dict) and set(value) != {"in"}:
                raise ValueError(f"filter {key!r}: the only operator is 'in', as {{\"in\": [...]}}")
        return v


class SearchResult(BaseModel):
    chunk_id: str
    document_id: str
    title: str
    text: str
    score: float = Field(
        description="Higher is better; comparable within one response only. `keyword`: BM25 (title and headings "
        "weighted in). `semantic`: cosine similarity of query and chunk embeddings, -1..1 (the local e5 model "
        "gives related text about 0.8 to 0.9). `hybrid`: the fused score of `fusion`: with `zscore` (default) "
        "the weighted sum of the two retrievers' standardized scores (standard deviations above the candidates' "
        "mean; a lone candidate counts 1.0), with `minmax` the weighted sum of scores scaled to 0..1, with `rrf` "
        "the sum of 1 / (k + rank)."
    )
    metadata: dict[str, Any]
    source: SourceRead
    collection: str


class SearchResponse(BaseModel):
    results: list[SearchResult]
    took_ms: float


class ChatRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "message": "有給休暇は何日もらえますか？",
                    "collection": "default",
                    "stream": False,
                }
            ]
        },
    )

    message: str = Field(..., min_length=1, max_length=4000)
    conversation_id: str | None = Field(None, max_length=64, description="Continue an earlier conversation.")
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    filters: dict[str, FilterValue] = Field(default_factory=dict)
    top_k: int | None = Field(None, ge=1, le=20, description="How many passages to ground the answer on.")
    model: str | None = Field(
        None,
        max_length=256,
        description="Another chat model the operator allows (KS_CHAT_ALLOWED_MODELS); default: KS_CHAT_MODEL.",
    )
    stream: bool = Field(False, description="Reply as Server-Sent Events: citations, deltas, done.")

    _filters = field_validator("filters")(SearchRequest._filters.__func__)  # type: ignore[attr-defined]

    @field_validator("message")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("message must contain some text")
        return v


class CitationRead(BaseModel):
    n: int = Field(description="The [n] marker used in the answer.")
    document_id: str
    chunk_id: str
    title: str
    quote: str = Field(description="The cited passage.")
    source: SourceRead


class ChatResponse(BaseModel):
    answer: str = Field(description="The answer, with [n] markers that point at `citations`.")
    citations: list[CitationRead]
    conversation_id: str
    model: str = Field(
        description="'extractive' for the local answerer: it quotes document sentences, it does not compose new text."
    )
    usage: dict[str, int]
    grounded: bool = Field(description="False when the documents did not cover the question.")
    guardrail_intervened: bool = Field(
        False, description="True when a guardrail replaced the answer; `answer` then holds the guardrail's message."
    )


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
