"""The composition root: builds engines, stores, providers and services once; the API and the CLI both use it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.access.audit import AuditLog
from app.access.keys import KeyService
from app.access.ratelimit import RateLimiter, build_rate_limiter
from app.chat.service import ChatService
from app.core.config import Settings
from app.core.errors import StoreUnavailable
from app.core.events import Observers
from app.ingest.blobs import build_blob_store, clear_stale_spool
from app.ingest.catalog import Catalog
from app.ingest.parsers import ParseLimits
from app.ingest.service import IngestService
from app.ingest.sources import SourceRegistry, SyncService, build_s3_sync
from app.ingest.worker import JobWorker
from app.providers.base import ChatModel, Embedder, ObservedEmbedder
from app.providers.batching import QueryEmbedder
from app.providers.factory import build_chat_model, build_embedder, build_reranker
from app.search.second_stage import SentenceRescorer
from app.search.service import SearchService
from app.stores.readiness import Readiness
from app.stores.sql import migrate
from app.stores.sql.migrate import SchemaGate
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
    rate_limiter: RateLimiter
    # Services report searches, ingest jobs and model calls here; the app attaches its metrics.
    observers: Observers
    # Whether the database carries this code's schema (API calls answer 503 naming `migrate` until it does).
    schema: SchemaGate
    worker: JobWorker | None = None
    _s3_sync: SyncService | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def s3_sync(self) -> SyncService:
        """The S3 sync service, built on first use (one boto3 client for the process)."""
        with self._lock:
            if self._s3_sync is None:
                self._s3_sync = build_s3_sync(self.ingest, self.sessions, self.settings)
            return self._s3_sync

    def sync_in_background(self, job_id: str) -> None:
        """Run an S3 sync job in a thread of its own; ``close`` waits for it (up to the shutdown grace), so a sync
        never writes into stores that were closed under it."""
        service = self.s3_sync()
        thread = threading.Thread(target=service.run, args=(job_id,), name=f"sync-{job_id[:8]}", daemon=True)
        with self._lock:
            self._background = [t for t in self._background if t.is_alive()] + [thread]
        thread.start()

    def ping_database(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    _closing: threading.Event = field(default_factory=threading.Event)
    _background: list[threading.Thread] = field(default_factory=list)

    @property
    def readiness(self) -> Readiness:
        return Readiness(self.engine, self.schema, self.store, self.settings.ready_timeout_s)

    def start_workers(self) -> None:
        """Repair what an earlier crash left (in the background), then run queued jobs; both wait until the
        database has been migrated."""
        if self.settings.ingest_workers > 0 and self.worker is None:
            self.worker = JobWorker(self.ingest, threads=self.settings.ingest_workers)
            threading.Thread(target=self._recover_then_work, name="recover", daemon=True).start()

    def _recover_then_work(self) -> None:
        if not self.schema.wait(self._closing):
            return
        worker = self.worker
        if worker is not None and not self._closing.is_set():
            worker.start()
        self._recover()

    def _recover(self) -> None:
        clear_stale_spool(self.settings.data_dir / "spool")
        try:
            report = self.ingest.recover()
            if not report.clean:
                log.warning("repaired after an earlier stop: %s", report)
        except Exception:
            log.exception("start-up consistency check failed; run `knowledge-search doctor`")

    def close(self) -> None:
        self._closing.set()
        if self.worker is not None:
            self.worker.stop()
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        with self._lock:
            running = list(self._background)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s is still running at shutdown; its job is left as it is", thread.name)
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
    wait_s: float = 0.0,
) -> Container:
    """``wait_s``: how long to wait for the chunk store to answer at start (containers start in any order)."""
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
    _ensure_ready(store, IndexInfo(embedding_model=embedder.model_id, dimension=embedder.dimension), wait_s)
    chat_model = build_chat_model(settings, analyzer)
    rescorer = SentenceRescorer(analyzer, depth=settings.second_stage_depth, weight=settings.second_stage_weight)
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
        second_stage=rescorer if settings.second_stage == "sentences" else None,
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
        parse_limits=parse_limits(settings),
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
        candidates=settings.chat_candidates,
        second_stage=rescorer,
        min_similarity=_min_similarity(settings),
        allowed_models=settings.chat_allowed_models,
    )
    schema = SchemaGate(engine)
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
        rate_limiter=build_rate_limiter(
            settings.rate_limit_storage, sessions, settings.rate_limit_per_minute, settings.is_sqlite
        ),
        observers=observers,
        schema=schema,
    )


def parse_limits(settings: Settings) -> ParseLimits:
    mib = 1 << 20
    return ParseLimits(
        parse_bytes=int(settings.max_parse_mb * mib),
        inflated_bytes=int(settings.max_inflated_mb * mib),
        compression_ratio=settings.max_compression_ratio,
        pdf_pages=settings.max_pdf_pages,
        pdf_stream_bytes=int(settings.max_pdf_stream_mb * mib),
    )


def _ensure_ready(store: ChunkStore, info: IndexInfo, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            store.ensure_ready(info)
            return
        except StoreUnavailable as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("the chunk store does not answer yet, retrying until KS_STARTUP_WAIT_S runs out: %s", exc)
            time.sleep(2)


def _min_similarity(settings: Settings) -> float:
    if settings.chat_min_similarity is not None:
        return settings.chat_min_similarity
    return 0.80 if settings.embedding_provider == "local" else 0.0
