"""Query → embed → retrieve (keyword + vector) → fuse → (rerank)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from app.providers.base import Embedder, Reranker
from app.search.analysis import Analyzer
from app.search.fusion import reciprocal_rank_fusion
from app.stores.vector.base import ChunkFilter, ChunkRecord, ChunkStore

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
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._analyzer = analyzer
        self._rrf_k = rrf_k
        self._multiplier = candidate_multiplier
        self._min_candidates = min_candidates
        self._reranker = reranker

    def search(self, query: str, flt: ChunkFilter, top_k: int = 10, mode: Mode = "hybrid") -> SearchOutcome:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        n_candidates = top_k if mode != "hybrid" else max(top_k * self._multiplier, self._min_candidates)
        if self._reranker is not None:
            n_candidates = max(n_candidates, top_k * self._multiplier)

        keyword_hits, vector_hits = [], []
        if mode in ("hybrid", "keyword"):
            t = time.perf_counter()
            tokens = self._analyzer.tokens(query)
            keyword_hits = self._store.keyword_search(tokens, flt, n_candidates)
            timings["keyword"] = _ms(t)
        if mode in ("hybrid", "semantic"):
            t = time.perf_counter()
            vector = self._embedder.embed_query(query)
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            vector_hits = self._store.vector_search(vector, flt, n_candidates)
            timings["vector"] = _ms(t)

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
            fused = reciprocal_rank_fusion(
                [[h.chunk.chunk_id for h in keyword_hits], [h.chunk.chunk_id for h in vector_hits]], k=self._rrf_k
            )
            ranked = []
            for chunk_id, score in fused:
                merged[chunk_id].score = score
                ranked.append(merged[chunk_id])
        else:
            ranked = list(merged.values())

        if self._reranker is not None and ranked:
            t = time.perf_counter()
            order = self._reranker.rerank(query, [sc.chunk.text for sc in ranked], top_k)
            ranked = [_with_score(ranked[i], s) for i, s in order]
            timings["rerank"] = _ms(t)
        return SearchOutcome(hits=ranked[:top_k], took_ms=_ms(started), timings_ms=timings)


def _with_score(sc: ScoredChunk, score: float) -> ScoredChunk:
    sc.score = score
    return sc


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
