"""Settings: one pydantic-settings root, read from the environment with the ``KS_`` prefix."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KS_", env_file=".env", extra="ignore")

    # Where the embedded default keeps everything (metadata DB, chunk index, uploaded files).
    data_dir: Path = Path("./data")
    # Where uploaded originals wait for their ingest job: "local" (data_dir/blobs), a directory (storage every
    # node mounts), or s3://bucket/prefix so API nodes and workers on other machines share them.
    blob_store: str = "local"
    # Metadata database; defaults to SQLite inside data_dir.
    database_url: str | None = None
    # Postgres pool tuning (ignored on SQLite).
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout_s: float = Field(30.0, gt=0)
    db_connect_timeout_s: int = Field(10, ge=1)
    db_statement_timeout_ms: int = Field(30_000, ge=0)

    # A key with every right. With no key the service only serves on loopback.
    admin_key: SecretStr | None = None

    # Backends, chosen by name.
    vector_store: Literal["embedded", "opensearch"] = "embedded"
    embedding_provider: Literal["local", "bedrock"] = "local"
    chat_provider: Literal["local", "bedrock", "openai"] = "local"
    embedding_model: str = "multilingual-e5-small-q4"
    chat_model: str = "extractive"

    # OpenSearch (vector_store=opensearch). The URL may list several nodes, comma-separated: requests are spread
    # over them and a node that does not answer is skipped until it does again.
    opensearch_url: str = "http://127.0.0.1:9200"
    opensearch_index: str = "knowledge-search-chunks"
    # How requests authenticate: "basic" (KS_OPENSEARCH_USERNAME/PASSWORD), "sigv4" (Amazon OpenSearch Service or
    # Serverless, credentials from boto3's default chain), "none". Unset: basic when a username is set, else none.
    opensearch_auth: Literal["none", "basic", "sigv4"] | None = None
    opensearch_username: str | None = None
    opensearch_password: SecretStr | None = None
    # sigv4: "es" (OpenSearch Service domains) or "aoss" (OpenSearch Serverless collections); region falls back to
    # KS_AWS_REGION, then boto3's chain (AWS_REGION, AWS_DEFAULT_REGION, the profile).
    opensearch_aws_service: Literal["es", "aoss"] = "es"
    opensearch_aws_region: str | None = None
    opensearch_verify_certs: bool = True
    # PEM file of the certificate authorities that signed the cluster's certificate (a private CA); unset: the
    # system's trust store.
    opensearch_ca_bundle: Path | None = None
    opensearch_timeout_s: float = 30.0
    # Retries of a request on another node (connection errors, timeouts, 502/503/504), per request.
    opensearch_max_retries: int = Field(3, ge=0, le=10)
    opensearch_shards: int = Field(1, ge=1)
    opensearch_replicas: int = Field(0, ge=0)

    # Ingestion
    chunk_size: int = Field(600, ge=100, le=8000, description="Target chunk size in characters.")
    chunk_overlap: int = Field(100, ge=0, le=2000, description="Characters carried into the next chunk.")
    max_upload_mb: float = Field(50.0, gt=0)
    embed_batch_size: int = Field(32, ge=1, le=512)
    ingest_workers: int = Field(1, ge=0, le=32, description="In-process workers for wait=false uploads.")
    # A worker that stops renewing its lease (it died) loses the job to another worker after this long. A running
    # job renews it every min(this / 3, 5) seconds, however long one parse or one batch takes.
    job_lease_s: float = Field(30.0, gt=0)
    job_max_attempts: int = Field(5, ge=1, le=50)
    job_backoff_s: float = Field(2.0, ge=0)
    # What parsing one upload may cost (app/ingest/parsers/limits.py); a file past a limit gets 413 and why.
    # Memory one whole-file parse (DOCX, HTML, Markdown) may take, estimated from the file before it is parsed;
    # one such parse runs at a time.
    max_parse_mb: float = Field(512.0, gt=0)
    # Bytes a .docx may inflate to (all its parts), and page content a PDF's text extraction may parse in all.
    max_inflated_mb: float = Field(128.0, gt=0)
    # A .docx part (past 1 MiB inflated) compressed more than this many to one is a decompression bomb.
    max_compression_ratio: int = Field(100, ge=10)
    max_pdf_pages: int = Field(10_000, ge=1)
    # Bytes one PDF stream may inflate to (pypdf's own limits are set from it).
    max_pdf_stream_mb: float = Field(16.0, gt=0)

    # Search
    # Query embeddings (app.providers.batching): an LRU of recent queries' vectors (0: off), and the queries
    # that arrive while the local model is busy embedded together, at most this many at once (1: off), after
    # waiting at most query_batch_wait_ms for company when the model is idle.
    query_cache_size: int = Field(4096, ge=0, le=1_000_000)
    query_batch_size: int = Field(16, ge=1, le=128)
    query_batch_wait_ms: float = Field(2.0, ge=0, le=50)
    rrf_k: int = Field(60, ge=1)
    candidate_multiplier: int = Field(4, ge=1, le=50)
    min_candidates: int = Field(50, ge=1, le=1000)

    # --- ranking ---
    # How hybrid search merges keyword and vector results: rrf (ranks, with rrf_k), minmax or zscore
    # (normalized scores, weighted by fusion_weight_vector for vectors and 1 - that for keywords).
    # zscore at 0.5 won on both eval sets (docs/benchmarks.md, "Retrieval quality").
    fusion: Literal["rrf", "minmax", "zscore"] = "zscore"
    fusion_weight_vector: float = Field(0.5, ge=0.0, le=1.0)
    # BM25 weight of a chunk's context field (document title and heading path) against its text field.
    keyword_context_weight: float = Field(1.0, ge=0.0, le=20.0)
    # The second stage (app.search.second_stage): re-score the first candidates by their best sentence.
    # Chat always applies it; hybrid search when "sentences".
    second_stage: Literal["none", "sentences"] = "none"
    second_stage_depth: int = Field(12, ge=1, le=200)
    second_stage_weight: float = Field(0.5, ge=0.0, le=1.0)

    # Chat
    chat_top_k: int = Field(5, ge=1, le=50)
    # Cosine similarity (query vs chunk) below which a chunk does not count as covering the question.
    # None: 0.80 for the local multilingual-e5 (calibrated on the sample corpus: related passages score 0.82+,
    # unrelated ones 0.70-0.79); 0.0 for other embedders, whose scale differs: their chat model is told to say
    # when the sources do not cover a question. Set it after measuring your embedder.
    chat_min_similarity: float | None = Field(None, ge=-1.0, le=1.0)
    chat_max_sentences: int = Field(3, ge=1, le=20)
    # Extractive answerer: a sentence supports the question when it holds this share of the question's
    # IDF-weighted words (app.text.evidence); below it everywhere, the answer is "not covered".
    chat_min_coverage: float = Field(0.2, ge=0.0, le=1.0)
    # Chunks chat retrieves and re-scores by their best sentence before it picks its sources.
    chat_candidates: int = Field(12, ge=1, le=100)

    # --- model providers (Bedrock, OpenAI-compatible) ---
    # AWS region for Bedrock; None uses boto3's chain (AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config).
    aws_region: str | None = None
    bedrock_retry_mode: Literal["standard", "adaptive"] = "adaptive"
    bedrock_max_attempts: int = Field(default=4, ge=1, le=20)
    bedrock_connect_timeout_s: float = Field(default=5.0, gt=0)
    bedrock_read_timeout_s: float = Field(default=60.0, gt=0)
    # Bedrock guardrail applied to every chat call when both id and version are set.
    bedrock_guardrail_id: str | None = None
    bedrock_guardrail_version: str | None = None
    bedrock_guardrail_trace: bool = False
    # Models a chat request may pick besides chat_model; empty: only chat_model.
    chat_allowed_models: list[str] = Field(default_factory=list)
    chat_max_tokens: int = Field(default=1024, ge=1, le=100_000)
    chat_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    chat_max_history_tokens: int = Field(default=2000, ge=0)
    # Titan Text Embeddings v2 accepts 256, 512 or 1024; None keeps the model's default.
    embedding_dimensions: int | None = None
    embedding_normalize: bool = True
    # Parallel embedding requests (Titan embeds one text per request).
    embed_concurrency: int = Field(default=4, ge=1, le=64)
    rerank_provider: Literal["none", "bedrock"] = "none"
    rerank_model: str = "amazon.rerank-v1:0"
    # OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server), chat_provider=openai.
    openai_base_url: str = "http://127.0.0.1:8080/v1"
    openai_api_key: SecretStr | None = None
    openai_timeout_s: float = Field(default=60.0, gt=0)

    # --- access control ---
    # Requests per minute per API key (0: no limit).
    rate_limit_per_minute: int = Field(600, ge=0)
    # Where requests are counted: "database" (the metadata DB: the limit holds across every instance), "memory"
    # (per process), "auto": database on Postgres, memory on SQLite.
    rate_limit_storage: Literal["auto", "database", "memory"] = "auto"
    audit_retention_days: int = Field(365, ge=1)
    # Audit events reach the database in batches at most this far apart (a journal on local disk keeps them
    # through a crash meanwhile; app.access.audit_journal).
    audit_flush_ms: float = Field(200.0, ge=1, le=10_000)

    log_level: str = "INFO"

    # --- observability and gateway ---
    # Log lines of `serve`: "auto" writes readable lines on a terminal and JSON objects otherwise (a container,
    # a pipe, a file); "json" or "text" choose one whatever stderr is.
    log_format: Literal["auto", "json", "text"] = "auto"
    # OpenTelemetry tracing (extra "otel"), configured by the standard OTEL_* variables.
    otel_enabled: bool = False
    # Path prefix the gateway serves us under, e.g. /kb (for /docs, openapi.json and the page).
    root_path: str = Field("", pattern=r"^(/[A-Za-z0-9._~-]+)*/?$")
    # Proxies whose X-Forwarded-For/-Proto are believed (comma-separated IPs or CIDRs, "*" for any); empty: none.
    forwarded_allow_ips: str = ""
    # Browser origins allowed to call the API (comma-separated or a JSON list); empty: no CORS, the default.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Request bodies above this get 413 (uploads to /v1/documents have KS_MAX_UPLOAD_MB instead).
    max_body_mb: float = Field(1.0, gt=0)
    # Seconds open requests (streamed answers included) get to finish on SIGTERM.
    shutdown_grace_s: int = Field(25, ge=0)
    # Each readiness check that has not answered within this is reported as "timeout".
    ready_timeout_s: float = Field(2.0, gt=0)
    # At start, how long `serve` and `worker` wait for the chunk store, and `migrate` for the database, to answer
    # (in a container stack they start in any order).
    startup_wait_s: float = Field(120.0, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            return json.loads(v) if v.startswith("[") else [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("opensearch_url")
    @classmethod
    def _urls(cls, v: str) -> str:
        urls = [u.strip() for u in v.split(",") if u.strip()]
        if not urls or any(not u.startswith(("http://", "https://")) for u in urls):
            raise ValueError(
                "give one or more http(s):// URLs, comma-separated, e.g. https://node1:9200,https://node2:9200"
            )
        if len({u.split("://")[0] for u in urls}) > 1:
            raise ValueError("all OpenSearch URLs must use the same scheme (http or https)")
        return ",".join(urls)

    @property
    def opensearch_urls(self) -> list[str]:
        return self.opensearch_url.split(",")

    @field_validator("root_path")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info):  # type: ignore[no-untyped-def]
        size = info.data.get("chunk_size", 600)
        if v >= size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return v

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'metadata.db').resolve()}"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
