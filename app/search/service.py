"""Query → embed → retrieve (keyword + vector) → fuse → (rerank)."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from app.core.events import Observers
from app.providers.base import CachingEmbedder, Embedder, Reranker
from app.search.fusion import Fusion, FusionMethod
from app.stores.vector.base import ChunkFilter, ChunkRecord, ChunkStore, Hit
from app.text.analysis import Analyzer

if TYPE_CHECKING:
    from app.search.second_stage import SentenceRescorer

Mode = Literal["hybrid", "semantic", "keyword"]


@dataclass(slots=True)
class ScoredChunk:
    chunk: ChunkRecord
    score: float
    # Each retriever's own score and 1-based rank, when the chunk was among its candidates.
    keyword_score: float | None = None
    vector_score: float | None = None
    keyword_rank: int | None = None
    vector_rank: int | None = None
    # Coverage of the question by the chunk's best sentence, when the second stage looked at it (0..1).
    evidence: float | None = None


@dataclass(slots=True)
class SearchOutcome:
    hits: list[ScoredChunk]
    took_ms: float
    timings_ms: dict[str, float]


class SearchService:
    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        analyzer: Analyzer,
        *,
        rrf_k: int = 60,
        candidate_multiplier: int = 4,
        min_candidates: int = 50,
        reranker: Reranker | None = None,
        fusion: FusionMethod = "zscore",
        fusion_weight_vector: float = 0.5,
        second_stage: SentenceRescorer | None = None,
        observers: Observers | None = None,
    ) -> None:
        self._observers = observers or Observers()
        self._store = store
        self._embedder = embedder
        self._cached_query = embedder.cached_query if isinstance(embedder, CachingEmbedder) else None
        self._analyzer = analyzer
        # The default fusion of hybrid searches; a request may choose another (see app.search.fusion).
        self.fusion = Fusion(method=fusion, k=rrf_k, weight_vector=fusion_weight_vector)
        self._multiplier = candidate_multiplier
        self._min_candidates = min_candidates
        self._reranker = reranker
        # Applied to hybrid searches when configured (KS_SECOND_STAGE); chat asks for it by itself.
        self.second_stage = second_stage
        # Threads for the keyword half of hybrid searches; idle ones cost nothing, and each search holds one.
        self._keyword_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="keyword-search")

    @property
    def has_reranker(self) -> bool:
        return self._reranker is not None

    def _keyword(self, query: str, flt: ChunkFilter, limit: int, timings: dict[str, float]) -> list[Hit]:
        t = time.perf_counter()
        hits = self._store.keyword_search(self._analyzer.query_terms(query), flt, limit)
        timings["keyword"] = _ms(t)
        return hits

    def search(
        self,
        query: str,
        flt: ChunkFilter,
        top_k: int = 10,
        mode: Mode = "hybrid",
        *,
        fusion: Fusion | None = None,
        rerank: bool = True,
        query_vector: np.ndarray | None = None,
        per_document: int | None = None,
        second_stage: SentenceRescorer | None | bool = True,
    ) -> SearchOutcome:
        """``fusion`` overrides the default for hybrid mode; ``rerank=False`` skips a configured reranker;
        ``query_vector`` is the query's embedding when the caller already has it (evaluation runs);
        ``per_document`` keeps at most that many chunks of one document (the best ones), so one long document
        cannot fill the results; ``second_stage``: True applies the configured one to hybrid searches, False
        none, or a given SentenceRescorer (chat's)."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        widen = mode == "hybrid" or per_document is not None
        n_candidates = max(top_k * self._multiplier, self._min_candidates) if widen else top_k
        reranker = self._reranker if rerank else None
        if reranker is not None:
            n_candidates = max(n_candidates, top_k * self._multiplier)

        keyword_hits, vector_hits = [], []
        keyword_job: Future[list[Hit]] | None = None
        if mode != "keyword" and query_vector is None and self._cached_query is not None:
            query_vector = self._cached_query(query)
        if mode == "hybrid" and query_vector is None:
            # The keyword retriever runs beside the query embedding and the vector search: they share nothing,
            # and the embedder, SQLite and OpenSearch all release the GIL while they work. When the query's
            # vector is already at hand there is nothing to wait for, and handing the keyword half to another
            # thread would cost more than it saves.
            keyword_job = self._keyword_pool.submit(self._keyword, query, flt, n_candidates, timings)
        elif mode != "semantic":
            keyword_hits = self._keyword(query, flt, n_candidates, timings)
        if mode in ("hybrid", "semantic"):
            t = time.perf_counter()
            vector = self._embedder.embed_query(query) if query_vector is None else query_vector
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            vector_hits = self._store.vector_search(vector, flt, n_candidates)
            timings["vector"] = _ms(t)
        if keyword_job is not None:
            keyword_hits = keyword_job.result()

        merged: dict[str, ScoredChunk] = {}
        for rank, hit in enumerate(keyword_hits, start=1):
            merged[hit.chunk.chunk_id] = ScoredChunk(hit.chunk, hit.score, keyword_score=hit.score, keyword_rank=rank)
        for rank, hit in enumerate(vector_hits, start=1):
            sc = merged.get(hit.chunk.chunk_id)
            if sc is None:
                merged[hit.chunk.chunk_id] = ScoredChunk(hit.chunk, hit.score, vector_score=hit.score, vector_rank=rank)
            else:
                sc.vector_score, sc.vector_rank = hit.score, rank

        if mode == "hybrid":
            fused = (fusion or self.fusion).fuse(
                [(h.chunk.chunk_id, h.score) for h in keyword_hits], [(h.chunk.chunk_id, h.score) for h in vector_hits]
            )
            ranked = []
            for chunk_id, score in fused:
                merged[chunk_id].score = score
                ranked.append(merged[chunk_id])
        else:
            ranked = list(merged.values())

        if reranker is not None and ranked:
            t = time.perf_counter()
            order = reranker.rerank(query, [sc.chunk.text for sc in ranked], top_k)
            ranked = [_with_score(ranked[i], s) for i, s in order]
            timings["rerank"] = _ms(t)
        stage = self.second_stage if second_stage is True else (second_stage or None)
        if stage is not None and mode == "hybrid" and reranker is None and ranked:
            t = time.perf_counter()
            ranked = stage.rescore(query, ranked)
            timings["second_stage"] = _ms(t)
        if per_document is not None:
            ranked = limit_per_document(ranked, per_document)
        outcome = SearchOutcome(hits=ranked[:top_k], took_ms=_ms(started), timings_ms=timings)
        self._observers.search_finished(mode, outcome.took_ms, timings)
        return outcome


def limit_per_document(ranked: list[ScoredChunk], n: int) -> list[ScoredChunk]:
    """The ranking with at most ``n`` chunks of any one document (its best ones), order otherwise kept."""
    seen: dict[str, int] = {}
    kept = []
    for sc in ranked:
        count = seen.get(sc.chunk.document_id, 0)
        if count < n:
            kept.append(sc)
        seen[sc.chunk.document_id] = count + 1
    return kept


def distinct_documents_first(ranked: list[ScoredChunk], per_round: int = 2) -> list[ScoredChunk]:
    """Each document's best ``per_round`` chunks first (in rank order), then every document's next ones, and so
    on: one long document cannot fill what chat reads, and the document that answers keeps the two passages a
    follow-up question often needs."""
    seen: dict[str, int] = {}
    keyed = []
    for position, sc in enumerate(ranked):
        count = seen.get(sc.chunk.document_id, 0)
        seen[sc.chunk.document_id] = count + 1
        keyed.append((count // per_round, position, sc))
    return [sc for _, _, sc in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _with_score(sc: ScoredChunk, score: float) -> ScoredChunk:
    sc.score = score
    return sc


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
