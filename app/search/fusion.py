"""Rank fusion: a pure function, so every backend's keyword and vector lists are fused alike."""

from __future__ import annotations

from collections.abc import Sequence


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
