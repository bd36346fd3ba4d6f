"""Rank fusion: pure functions, so every backend's keyword and vector lists are fused alike.

Three methods, chosen by ``KS_FUSION`` (or per request):

- ``rrf``: reciprocal rank fusion; uses ranks only, so the two retrievers' score scales never matter.
- ``minmax``: each list's scores scaled to [0, 1], then ``weight_vector * vector + (1 - weight_vector) * keyword``.
- ``zscore``: each list's scores standardized (mean 0, standard deviation 1), then the same weighted sum.

A document missing from one list gets that list's lowest normalized score (it ranked below every candidate
the retriever returned). Ties keep a deterministic order: the better rank in the more heavily weighted list
first, then the other list's rank, then the id. So a weight of 0 or 1 reproduces the single retriever's
order, with the other retriever's extra documents after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FusionMethod = Literal["rrf", "minmax", "zscore"]
FUSION_METHODS: tuple[FusionMethod, ...] = ("rrf", "minmax", "zscore")
Scored = Sequence[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class Fusion:
    """How hybrid search merges the keyword and vector lists."""

    method: FusionMethod = "rrf"
    k: int = 60
    weight_vector: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"fusion method must be one of {', '.join(FUSION_METHODS)}, not {self.method!r}")
        if self.k < 1:
            raise ValueError("the RRF constant k must be at least 1")
        if not 0.0 <= self.weight_vector <= 1.0:
            raise ValueError("weight_vector must be between 0 and 1")

    @property
    def label(self) -> str:
        """A short name for reports: ``rrf k=60``, ``minmax w=0.5``."""
        return f"rrf k={self.k}" if self.method == "rrf" else f"{self.method} w={self.weight_vector:g}"

    def fuse(self, keyword: Scored, vector: Scored) -> list[tuple[str, float]]:
        """Fuse two (id, score) lists, each best first; returns (id, fused score), best first."""
        if self.method == "rrf":
            return reciprocal_rank_fusion([[i for i, _ in keyword], [i for i, _ in vector]], k=self.k)
        normalize = min_max if self.method == "minmax" else z_scores
        return weighted_sum(normalize(keyword), normalize(vector), self.weight_vector)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Cormack et al. (2009): score(d) = sum over lists of 1 / (k + rank), rank starting at 1.

    Ties keep the order in which ids were first seen (earlier lists first), so results are deterministic.
    """
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def min_max(scored: Scored) -> list[tuple[str, float]]:
    """Scores scaled to [0, 1] (best 1, worst 0); all equal scores (or a single one) become 1."""
    if not scored:
        return []
    values = [s for _, s in scored]
    low, high = min(values), max(values)
    span = high - low
    return [(i, (s - low) / span if span > 0 else 1.0) for i, s in scored]


def z_scores(scored: Scored) -> list[tuple[str, float]]:
    """Scores standardized to mean 0 and (population) standard deviation 1. A lone candidate, or candidates that
    all score alike, get 1.0, as min-max gives them: the retriever found them and nothing ranks above them (0.0,
    the mean, would read as "average" and made a lone result score 0)."""
    if not scored:
        return []
    values = [s for _, s in scored]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((s - mean) ** 2 for s in values) / len(values))
    return [(i, (s - mean) / std if std > 0 else 1.0) for i, s in scored]


def weighted_sum(keyword: Scored, vector: Scored, weight_vector: float) -> list[tuple[str, float]]:
    """``weight_vector * vector + (1 - weight_vector) * keyword`` over normalized scores, best first.

    A document absent from a list gets that list's lowest score (0 when the list is empty).
    """
    if not 0.0 <= weight_vector <= 1.0:
        raise ValueError("weight_vector must be between 0 and 1")
    kw, vec = dict(keyword), dict(vector)
    kw_floor = min(kw.values(), default=0.0)
    vec_floor = min(vec.values(), default=0.0)
    kw_rank = {item: r for r, (item, _) in enumerate(keyword)}
    vec_rank = {item: r for r, (item, _) in enumerate(vector)}
    fused = {
        item: weight_vector * vec.get(item, vec_floor) + (1.0 - weight_vector) * kw.get(item, kw_floor)
        for item in [*kw, *vec]
    }
    first, second = (vec_rank, kw_rank) if weight_vector > 0.5 else (kw_rank, vec_rank)
    missing = len(kw_rank) + len(vec_rank)

    def order(kv: tuple[str, float]) -> tuple[float, int, int, str]:
        item, score = kv
        return (-score, first.get(item, missing), second.get(item, missing), item)

    return sorted(fused.items(), key=order)
