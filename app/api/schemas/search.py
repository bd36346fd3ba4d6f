"""Search and chat: requests, results, answers with citations."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.schemas.common import COLLECTION_PATTERN, ID_PATTERN, SOME_TEXT_PATTERN, Filters
from app.api.schemas.documents import SourceRead


class FusionRequest(BaseModel):
    """How a hybrid search merges its keyword and vector results; unset fields take the service's settings."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"method": "minmax", "weight_vector": 0.7}],
            # what the validator below says, said in the schema too: k goes with rrf, weight_vector with the others
            "if": {"properties": {"method": {"const": "rrf"}}, "required": ["method"]},
            "then": {"properties": {"weight_vector": {"type": "null"}}},
            "else": {"properties": {"k": {"type": "null"}}},
        },
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
            ],
            # fusion applies to hybrid searches only (the validator below refuses it with the other modes)
            "if": {"properties": {"mode": {"enum": ["semantic", "keyword"]}}, "required": ["mode"]},
            "then": {"properties": {"fusion": {"type": "null"}}},
        },
    )

    query: str = Field(..., min_length=1, max_length=2000, pattern=SOME_TEXT_PATTERN, description="What to look for.")
    top_k: int = Field(10, ge=1, le=100)
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    filters: Filters = Field(default_factory=dict)
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

    message: str = Field(..., min_length=1, max_length=4000, pattern=SOME_TEXT_PATTERN, description="Your question.")
    conversation_id: str | None = Field(
        None, max_length=64, pattern=ID_PATTERN, description="Continue an earlier conversation."
    )
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    filters: Filters = Field(default_factory=dict)
    top_k: int | None = Field(None, ge=1, le=20, description="How many passages to ground the answer on.")
    model: str | None = Field(
        None,
        max_length=256,
        description="Another chat model the operator allows (KS_CHAT_ALLOWED_MODELS); default: KS_CHAT_MODEL.",
    )
    stream: bool = Field(False, description="Reply as Server-Sent Events: citations, deltas, done.")


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
