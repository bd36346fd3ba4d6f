"""Query embeddings under concurrency: a bounded cache of recent queries, and micro-batching of the rest.

Searches and chats each need one query vector. One call to the local model at a time, each on its own, means
that concurrency only queues. ``QueryEmbedder`` puts every query that is not in the cache on a queue; one
thread hands the model whatever has gathered while it was busy (at most ``max_batch`` queries and
``max_chars`` characters, waiting up to ``max_wait_s`` for company when the model is idle), so eight waiting
searches cost one model call instead of eight. The engine embeds a batch as the concatenation of its texts'
tokens, so a vector never depends on its batch-mates (tests/unit/test_query_batching.py checks that the
vectors are identical), and a batch costs what its tokens cost, without padding.

Fairness: callers take turns as they do at the model itself (app.core.fairness): each caller's first waiting
query before anyone's second, and a caller served in the last batch after those who were not, so a key with
twenty queries waiting cannot fill every batch while another key's one waits. Within a turn, a query that has
waited ``max_defer_s`` goes first (so a long one is not starved), then the shortest, so a long query never holds
up the short ones behind it for longer than one batch. A query over ``max_chars`` runs in a batch of its own.

The cache key is (model id, normalization, normalized text) and the text the model embeds is the normalized
one, cache hit or not: the vector of a query never depends on what was cached before it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from cachetools import LRUCache

from app.core.events import Observers
from app.core.fairness import current_caller
from app.providers.base import Embedder

# Outer whitespace and runs of whitespace are collapsed, so "paid  leave " and "paid leave" share an entry. The
# model does see extra spaces (they move a vector by up to 0.03 a component), so the text embedded is always
# the normalized one, cached or not. Case and Unicode forms change what the model reads, and are kept.
NORMALIZATION = "ws1"
_SPACES = re.compile(r"\s+")


def normalize_query(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class QueryCache:
    """A bounded LRU of query vectors keyed by (model id, normalization, text), safe across threads."""

    def __init__(self, size: int) -> None:
        self._lru: LRUCache[tuple[str, str, str], np.ndarray] = LRUCache(maxsize=size)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def get(self, key: tuple[str, str, str]) -> np.ndarray | None:
        with self._lock:
            return self._lru.get(key)

    def put(self, key: tuple[str, str, str], vector: np.ndarray) -> None:
        with self._lock:
            self._lru[key] = vector

    def __len__(self) -> int:
        return len(self._lru)


@dataclass(order=True)
class _Waiting:
    priority: tuple[int, int, int, int]
    text: str = field(compare=False)
    caller: str = field(compare=False)
    future: Future[np.ndarray] = field(compare=False)
    since: float = field(compare=False)


class QueryEmbedder:
    """An ``Embedder`` whose ``embed_query`` is cached and batched; documents pass through unchanged.

    With ``max_batch`` > 1, ``inner`` must offer ``embed_queries(texts) -> (n, dimension)``; the container
    batches only the local model (a remote provider embeds one text per request and is called in parallel, so
    its queries are only cached)."""

    def __init__(
        self,
        inner: Embedder,
        observers: Observers,
        *,
        cache_size: int = 4096,
        cache: QueryCache | None = None,
        max_batch: int = 16,
        max_wait_s: float = 0.002,
        max_chars: int = 2000,
        max_defer_s: float = 0.25,
    ) -> None:
        self.inner = inner
        self.model_id, self.dimension = inner.model_id, inner.dimension
        self._observers = observers
        self._cache = cache if cache is not None else (QueryCache(cache_size) if cache_size > 0 else None)
        self._max_batch, self._max_wait, self._max_chars, self._max_defer = (
            max_batch,
            max_wait_s,
            max_chars,
            max_defer_s,
        )
        self._batched = max_batch > 1
        self._cond = threading.Condition()
        self._queue: list[_Waiting] = []
        self._seq = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._served_last: set[str] = set()  # callers of the last batch: they go after the others next time

    # --- Embedder ---
    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_documents(texts)

    def cached_query(self, text: str) -> np.ndarray | None:
        """The cached vector of ``text`` (a hit), or None without counting a miss: ``embed_query`` follows."""
        if self._cache is None:
            return None
        vector = self._cache.get((self.model_id, NORMALIZATION, normalize_query(text)))
        if vector is not None:
            self._observers.query_cache_used(True)
        return vector

    def embed_query(self, text: str) -> np.ndarray:
        text = normalize_query(text)
        key = (self.model_id, NORMALIZATION, text)
        if self._cache is not None:
            vector = self._cache.get(key)
            self._observers.query_cache_used(vector is not None)
            if vector is not None:
                return vector
        vector = self._embed_batched(text) if self._batched else self.inner.embed_query(text)
        vector.setflags(write=False)  # shared by every caller that hits the cache: nobody may change it
        if self._cache is not None:
            self._cache.put(key, vector)
        return vector

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        closer = getattr(self.inner, "close", None)
        if callable(closer):
            closer()

    # --- batching ---
    def _embed_batched(self, text: str) -> np.ndarray:
        future: Future[np.ndarray] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the query embedder is closed")
            if self._thread is None:  # started on first use: the CLI and ingest-only processes never need it
                self._thread = threading.Thread(target=self._run, name="query-embedder", daemon=True)
                self._thread.start()
            self._seq += 1
            waiting = _Waiting((0, 1, len(text), self._seq), text, current_caller(), future, time.monotonic())
            self._queue.append(waiting)
            self._cond.notify()
        return future.result()

    def _run(self) -> None:
        while True:
            with self._cond:
                idle = not self._queue
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                if idle and len(self._queue) < self._max_batch and self._max_wait > 0:
                    # The model was idle and a query just came: give the searches already on their way a
                    # moment to join (bounded; at concurrency 1 this is the only latency batching adds). After
                    # a busy spell the queue has waited long enough.
                    self._cond.wait_for(lambda: len(self._queue) >= self._max_batch, self._max_wait)
                batch = self._take()
            self._embed(batch)

    def _take(self) -> list[_Waiting]:
        """Callers in turn: each caller's first query before anyone's second, and a caller served in the last
        batch after those who were not (round-robin, as app.core.fairness serves the model). Within a caller and
        within a turn, what waited ``max_defer`` first (oldest first), then shortest first. At most ``max_batch``
        queries and ``max_chars`` characters, unless one query alone is longer."""
        now = time.monotonic()
        order: dict[int, tuple[int, int]] = {}  # seq → (deferred: 0, else 1; then seq if deferred, else length)
        for w in self._queue:
            deferred = now - w.since >= self._max_defer
            order[w.priority[3]] = (0, w.priority[3]) if deferred else (1, len(w.text))
        turns: dict[str, int] = {}
        for w in sorted(self._queue, key=lambda w: (order[w.priority[3]], w.priority[3])):
            turn = turns.get(w.caller, 1 if w.caller in self._served_last else 0)
            turns[w.caller] = turn + 1
            w.priority = (turn, *order[w.priority[3]], w.priority[3])
        self._queue.sort()
        batch: list[_Waiting] = []
        chars = 0
        for w in self._queue:
            if len(batch) == self._max_batch or (batch and chars + len(w.text) > self._max_chars):
                break
            batch.append(w)
            chars += len(w.text)
        del self._queue[: len(batch)]
        self._served_last = {w.caller for w in batch}
        return batch

    def _embed(self, batch: list[_Waiting]) -> None:
        unique = list(dict.fromkeys(w.text for w in batch))  # the same query twice in a batch is embedded once
        try:
            vectors = self.inner.embed_queries(unique)  # type: ignore[attr-defined]
        except BaseException as exc:  # every waiting caller sees the model's error, as it would unbatched
            for w in batch:
                w.future.set_exception(exc)
            return
        rows = dict(zip(unique, np.asarray(vectors, dtype=np.float32), strict=True))
        for w in batch:
            w.future.set_result(rows[w.text].copy())
