"""Retrieval metrics as pure functions over one query's ranked document ids and its relevance grades.

``ranked`` is best first, one entry per document (see ``unique_in_order``); ``relevant`` maps a document id
to its grade, and only grades above 0 count. The definitions follow trec_eval, which BEIR reports:
nDCG uses the linear gain ``grade / log2(rank + 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def unique_in_order(ids: Iterable[str | None]) -> list[str]:
    """Document ids in order of first appearance: several chunks of one document count once, at their best
    rank. ``None`` (a chunk that maps to no corpus document) is dropped."""
    seen: dict[str, None] = {}
    for i in ids:
        if i is not None and i not in seen:
            seen[i] = None
    return list(seen)


def dcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    return sum(max(relevant.get(d, 0), 0) / math.log2(rank + 1) for rank, d in enumerate(ranked[:k], start=1))


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """DCG@k divided by the DCG@k of the ideal ranking; 0 when nothing is relevant."""
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    best = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg_at_k(ranked, relevant, k) / best if best > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the first k; 0 when nothing is relevant."""
    wanted = {d for d, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant document within the first k, else 0."""
    for rank, d in enumerate(ranked[:k], start=1):
        if relevant.get(d, 0) > 0:
            return 1.0 / rank
    return 0.0


def query_metrics(
    ranked: Sequence[str], relevant: Mapping[str, int], deep: Sequence[str] | None = None
) -> dict[str, float]:
    """The figures the eval command reports for one query; ``deep`` is the ranking of a deeper search, for
    Recall@100 (default: ``ranked``)."""
    return {
        "ndcg@10": ndcg_at_k(ranked, relevant, 10),
        "recall@10": recall_at_k(ranked, relevant, 10),
        "recall@100": recall_at_k(ranked if deep is None else deep, relevant, 100),
        "mrr@10": mrr_at_k(ranked, relevant, 10),
    }


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
