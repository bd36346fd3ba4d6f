"""The composition root: builds engines, stores, providers and services once; the API and the CLI both use it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.access.audit import AuditLog
from app.access.keys import KeyService
from app.access.ratelimit import KeyRateLimiter
from app.chat.service import ChatService
from app.core.config import Settings
from app.core.events import Observers
from app.ingest.blobs import build_blob_store, clear_stale_spool
from app.ingest.catalog import Catalog
from app.ingest.service import IngestService
from app.ingest.sources import SourceRegistry, SyncService, build_s3_sync
from app.ingest.worker import JobWorker
from app.providers.base import ChatModel, Embedder, ObservedEmbedder
from app.providers.batching import QueryEmbedder
from app.providers.factory import build_chat_model, build_embedder, build_reranker
from app.search.service import SearchService
from app.stores.sql import migrate
from app.stores.sql.session import build_engine, build_session_factory
from app.stores.vector.base import ChunkStore, IndexInfo
from app.stores.vector.factory import build_chunk_store
from app.text.analysis import Analyzer, default_analyzer

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ChunkStore
    embedder: Embedder
    chat_model: ChatModel
    analyzer: Analyzer
    ingest: IngestService
    search: SearchService
    chat: ChatService
    catalog: Catalog
    keys: KeyService
    sources: SourceRegistry
    audit: AuditLog
    rate_limiter: KeyRateLimiter
    # Services report searches, ingest jobs and model calls here; the app attaches its metrics.
    observers: Observers
    worker: JobWorker | None = None
    _s3_sync: SyncService | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def s3_sync(self) -> SyncService:
        """The S3 sync service, built on first use (one boto3 client for the process)."""
        with self._lock:
            if self._s3_sync is None:
                self._s3_sync = build_s3_sync(self.ingest, self.sessions, self.settings)
            return self._s3_sync

    def ping_database(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def start_workers(self) -> None:
        """Repair what an earlier crash left (in the background), then run queued jobs."""
        if self.settings.ingest_workers > 0 and self.worker is None:
            threading.Thread(target=self._recover, name="recover", daemon=True).start()
            self.worker = JobWorker(self.ingest, threads=self.settings.ingest_workers)
            self.worker.start()

    def _recover(self) -> None:
        clear_stale_spool(self.settings.data_dir / "spool")
        try:
            report = self.ingest.recover()
            if not report.clean:
                log.warning("repaired after an earlier stop: %s", report)
        except Exception:
            log.exception("start-up consistency check failed; run `knowledge-search doctor`")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.audit.close()  # the last events in, the journal removed
        self.store.close()
        for part in (self.chat_model, self.embedder):  # the embedder's query thread, if it started one
            closer = getattr(part, "close", None)
            if callable(closer):
                closer()
        self.engine.dispose()


def build_container(
    settings: Settings,
    *,
    apply_migrations: bool | None = None,
    embedder: Embedder | None = None,
) -> Container:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = build_engine(settings)
    if apply_migrations if apply_migrations is not None else settings.is_sqlite:
        migrate.upgrade(engine)
    sessions = build_session_factory(engine)
    analyzer = default_analyzer()
    observers = Observers()
    base = embedder or build_embedder(settings)
    embedder = QueryEmbedder(
        ObservedEmbedder(base, observers),  # model calls timed for /metrics
        observers,
        cache_size=settings.query_cache_size,
        # Only the local model gains from one call for several queries; remote ones are called in parallel.
        max_batch=settings.query_batch_size if callable(getattr(base, "embed_queries", None)) else 1,
        max_wait_s=settings.query_batch_wait_ms / 1000,
    )
    store = build_chunk_store(settings)
    store.ensure_ready(IndexInfo(embedding_model=embedder.model_id, dimension=embedder.dimension))
    chat_model = build_chat_model(settings, analyzer)
    search = SearchService(
        store,
        embedder,
        analyzer,
        rrf_k=settings.rrf_k,
        fusion=settings.fusion,
        fusion_weight_vector=settings.fusion_weight_vector,
        candidate_multiplier=settings.candidate_multiplier,
        min_candidates=settings.min_candidates,
        reranker=build_reranker(settings),
        observers=observers,
    )
    ingest = IngestService(
        sessions,
        store,
        embedder,
        analyzer,
        build_blob_store(settings.blob_store, settings.data_dir, region=settings.aws_region),
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        max_upload_bytes=settings.max_upload_bytes,
        embed_batch_size=settings.embed_batch_size,
        max_attempts=settings.job_max_attempts,
        lease_s=settings.job_lease_s,
        backoff_s=settings.job_backoff_s,
        observers=observers,
    )
    # Events go through a journal on local disk and reach the database in batches, off the request path.
    audit = AuditLog(
        sessions,
        settings.audit_retention_days,
        journal_dir=settings.data_dir / "audit-journal",
        flush_s=settings.audit_flush_ms / 1000,
    )
    audit.recover()
    chat = ChatService(
        sessions,
        search,
        chat_model,
        top_k=settings.chat_top_k,
        min_similarity=_min_similarity(settings),
        allowed_models=settings.chat_allowed_models,
    )
    return Container(
        settings,
        engine,
        sessions,
        store,
        embedder,
        chat_model,
        analyzer,
        ingest,
        search,
        chat,
        catalog=Catalog(store),
        keys=KeyService(sessions),
        sources=SourceRegistry(sessions),
        audit=audit,
        rate_limiter=KeyRateLimiter(settings.rate_limit_per_minute),
        observers=observers,
    )


def _min_similarity(settings: Settings) -> float:
    if settings.chat_min_similarity is not None:
        return settings.chat_min_similarity
    return 0.80 if settings.embedding_provider == "local" else 0.0
