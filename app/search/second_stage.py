"""The second stage of search: re-order the first candidates by their best sentence, not only their pooled score.

No cross-encoder ships its weights in a registry package that runs without torch (docs/benchmarks.md), so
this stage is lexical and cheap: the top ``depth`` fused candidates get a new score

    (1 - weight) * fused score (min-max over those candidates) + weight * coverage of their best sentence

(``app.text.evidence``: the share of the question's IDF-weighted words one sentence holds, with its title and
headings). Candidates below ``depth`` keep their order after them. It costs the analysis of ``depth`` chunks
(cached across requests), about 10 to 60 ms for 12 chunks, so chat always runs it and search only when
``KS_SECOND_STAGE=sentences``.
"""

from __future__ import annotations

from app.search.service import ScoredChunk
from app.text.analysis import Analyzer
from app.text.context import context_line
from app.text.evidence import Evidence, Passage


class SentenceRescorer:
    def __init__(self, analyzer: Analyzer, *, depth: int = 12, weight: float = 0.5) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError("the second stage's weight must be between 0 and 1")
        self._analyzer = analyzer
        self.depth = depth
        self.weight = weight

    def rescore(self, query: str, ranked: list[ScoredChunk], *, extra: str = "") -> list[ScoredChunk]:
        """``ranked`` best first; returns the same chunks re-ordered, ``score`` and ``evidence`` set on the head."""
        head, tail = ranked[: self.depth], ranked[self.depth :]
        if not head:
            return ranked
        evidence = Evidence(self._analyzer, query, [passage(sc) for sc in head], extra=extra)
        scores = [sc.score for sc in head]
        low, high = min(scores), max(scores)
        span = high - low
        for i, sc in enumerate(head):
            fused = (sc.score - low) / span if span > 0 else 1.0
            sc.evidence = evidence.best(i)
            sc.score = (1.0 - self.weight) * fused + self.weight * sc.evidence
        for sc in tail:  # scaled alike, they stay below every candidate of the head (score <= 0)
            sc.score = (1.0 - self.weight) * ((sc.score - low) / span if span > 0 else 0.0)
        # a stable sort: equal scores keep the first stage's order
        return sorted(head, key=lambda sc: -sc.score) + tail


def passage(sc: ScoredChunk) -> Passage:
    return Passage(sc.chunk.text, context_line(sc.chunk.title, sc.chunk.source.heading_path))
