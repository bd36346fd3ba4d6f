"""The service's own overhead over OpenSearch at 100,000 chunks.

    eval "$(scripts/services up)"
    .venv/bin/python -m bench.opensearch_overhead [--chunks 100000] [--queries 300] [--rebuild]

Indexes real chunk texts (docstrings of the standard library and installed packages, chunked like an upload,
cycled when they run out) with SYNTHETIC vectors into a dedicated alias (reused when it already holds enough
chunks): embedding 100k passages with the real model would take over an hour on this machine. The vectors are
cheap and deterministic (a sum of one fixed random vector per hashed token, plus per-chunk noise), so texts
that share words lie near each other and a query finds its chunks' neighbourhood.

Then, for each query (its vector computed beforehand, outside the timings), it times a hybrid search three ways:
the raw opensearch-py requests the store sends (one BM25 ``_search`` + one knn ``_search``, same bodies, same
client options), ``SearchService.search`` in-process, and ``POST /v1/search`` through the HTTP app. The
embedder hands back the precomputed vector, so no model time is counted anywhere.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine_line, percentile
from bench.corpus import DIM, MODEL_ID, HashedVectors, chunk_record, corpus_chunks, read_corpus

OUT = Path(__file__).resolve().parent / "out"


class PrecomputedEmbedder:
    """An Embedder whose query vectors were computed before the timed loop: lookups cost nothing."""

    model_id = MODEL_ID
    dimension = DIM

    def __init__(self, vectors: HashedVectors, analyzer: Any) -> None:
        self._vectors = vectors
        self._analyzer = analyzer
        self.queries: dict[str, np.ndarray] = {}

    def prepare(self, queries: Sequence[str]) -> None:
        for q in queries:
            self.queries[q] = self._vectors.of_tokens(self._analyzer.tokens(q))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors.of_tokens(self._analyzer.tokens(t)) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        vector = self.queries.get(text)
        return vector if vector is not None else self.embed_documents([text])[0]


def build_index(store: Any, analyzer: Any, vectors: HashedVectors, target: int, batch: int) -> float:
    from app.stores.vector.base import ChunkRecord

    corpus = read_corpus()
    started = time.perf_counter()
    pending: list[ChunkRecord] = []
    done = 0
    for doc_id, title, ordinal, draft in corpus_chunks(corpus, target):
        tokens = analyzer.tokens(draft.text)
        chunk_id = f"{doc_id}-{ordinal:05d}"
        pending.append(
            chunk_record(doc_id, title, ordinal, draft, " ".join(tokens), vectors.of_tokens(tokens, noise_key=chunk_id))
        )
        if len(pending) >= batch:
            store.add(pending)
            done += len(pending)
            pending = []
            elapsed = time.perf_counter() - started
            print(f"  indexed {done:>7,} chunks in {elapsed:6.0f} s = {done / elapsed:6.0f} chunks/s", flush=True)
    if pending:
        store.add(pending)
        done += len(pending)
    elapsed = time.perf_counter() - started
    rate = done / elapsed
    print(
        f"indexing: {done:,} chunks in {elapsed:.0f} s = {rate:.0f} chunks/s (chunk + tokenize + vectors + bulk + refresh)"
    )
    return rate


def pick_queries(client: Any, alias: str, n: int) -> dict[str, str]:
    """Query (the first words of a chunk) -> that chunk's text, for chunks spread over the index."""
    body = {
        "size": n * 3,
        "_source": ["text"],
        "query": {"function_score": {"random_score": {"seed": 7, "field": "_seq_no"}}},
    }
    queries: dict[str, str] = {}
    for h in client.search(index=alias, body=body)["hits"]["hits"]:
        words = re.findall(r"[A-Za-z][A-Za-z_]+", h["_source"]["text"])
        if len(words) >= 6:
            queries.setdefault(" ".join(words[:10]), h["_source"]["text"])
    return dict(list(queries.items())[:n])


def direct_bodies(tokens: list[str], vector: np.ndarray, limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bodies OpenSearchChunkStore.keyword_search / vector_search send for an unfiltered query."""
    from app.stores.vector.opensearch import HIDDEN as _HIDDEN
    from app.stores.vector.opensearch import MAX_WINDOW as _MAX_WINDOW

    size = min(limit, _MAX_WINDOW)
    keyword = {
        "size": size,
        "track_total_hits": False,
        "_source": {"excludes": _HIDDEN},
        "query": {
            "bool": {
                "must": [{"match": {"tokens": {"query": " ".join(dict.fromkeys(tokens)), "operator": "or"}}}],
                "filter": [],
            }
        },
    }
    knn = {
        "size": size,
        "track_total_hits": False,
        "_source": {"excludes": _HIDDEN},
        "query": {"knn": {"vector": {"vector": np.asarray(vector, dtype=np.float32).ravel().tolist(), "k": size}}},
    }
    return keyword, knn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alias", default="ks-bench-100k")
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--batch", type=int, default=1000, help="chunks per OpenSearchChunkStore.add call")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--rebuild", action="store_true", help="delete the alias's indices and index again")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from opensearchpy import OpenSearch

    from app.container import build_container
    from app.core.config import Settings
    from app.main import create_app
    from app.stores.vector.base import ChunkFilter
    from app.stores.vector.opensearch import OpenSearchChunkStore
    from app.text.analysis import default_analyzer

    data_dir = OUT / "opensearch-overhead"
    settings = Settings(
        data_dir=data_dir,
        # Its own metadata DB: search does not read it, and KS_DATABASE_URL may point at a shared Postgres.
        database_url=f"sqlite:///{(data_dir / 'metadata.db').resolve()}",
        vector_store="opensearch",
        opensearch_index=args.alias,
        admin_key=None,
        ingest_workers=0,
    )
    client_options = {"timeout": settings.opensearch_timeout_s, "http_compress": True, "max_retries": 2}
    direct = OpenSearch(hosts=[settings.opensearch_url], retry_on_timeout=True, **client_options)
    if args.rebuild:
        direct.indices.delete(index=f"{args.alias}*", ignore_unavailable=True)
    analyzer = default_analyzer()
    vectors = HashedVectors()
    embedder = PrecomputedEmbedder(vectors, analyzer)
    container = build_container(settings, embedder=embedder)
    store = container.store
    assert isinstance(store, OpenSearchChunkStore)

    existing = store.count()
    rate = None
    if existing < args.chunks:
        if existing:
            print(f"{args.alias} holds {existing:,} chunks, fewer than {args.chunks:,}: rebuilding")
            direct.indices.delete(index=f"{args.alias}*", ignore_unavailable=True)
            container.close()
            container = build_container(settings, embedder=embedder)
            store = container.store
            assert isinstance(store, OpenSearchChunkStore)
        rate = build_index(store, analyzer, vectors, args.chunks, args.batch)
    else:
        print(f"reusing {args.alias}: {existing:,} chunks (--rebuild to index again)")
    total = store.count()

    sources = pick_queries(direct, args.alias, args.queries)
    queries = list(sources)
    embedder.prepare(queries)
    tokens = {q: analyzer.tokens(q) for q in queries}
    flt = ChunkFilter()
    n_candidates = max(args.top_k * settings.candidate_multiplier, settings.min_candidates)

    # The replicated bodies must return what the store returns, or the comparison means nothing.
    kw_body, knn_body = direct_bodies(tokens[queries[0]], embedder.queries[queries[0]], n_candidates)
    raw_kw = [h["_id"] for h in direct.search(index=args.alias, body=kw_body)["hits"]["hits"]]
    raw_knn = [h["_id"] for h in direct.search(index=args.alias, body=knn_body)["hits"]["hits"]]
    assert raw_kw == [h.chunk.chunk_id for h in store.keyword_search(tokens[queries[0]], flt, n_candidates)]
    assert raw_knn == [h.chunk.chunk_id for h in store.vector_search(embedder.queries[queries[0]], flt, n_candidates)]

    lat: dict[str, list[float]] = {"direct": [], "service": [], "http": []}
    found = 0
    with TestClient(create_app(container=container)) as http:

        def run_direct(q: str) -> None:
            # Tokens and vector come ready-made: what this times is the two requests alone.
            kw_body, knn_body = direct_bodies(tokens[q], embedder.queries[q], n_candidates)
            direct.search(index=args.alias, body=kw_body)
            direct.search(index=args.alias, body=knn_body)

        def run_service(q: str) -> None:
            nonlocal found
            outcome = container.search.search(q, flt, args.top_k, "hybrid")
            found += any(h.chunk.text == sources[q] for h in outcome.hits)

        def run_http(q: str) -> None:
            r = http.post("/v1/search", json={"query": q, "top_k": args.top_k, "mode": "hybrid"})
            assert r.status_code == 200, r.text

        paths = {"direct": run_direct, "service": run_service, "http": run_http}
        # Warm-up: every query once (OpenSearch caches and the page cache then favour no path), and the
        # service and HTTP paths on a few (imports, connection pools).
        for q in queries:
            run_direct(q)
        for q in queries[:20]:
            run_service(q)
            run_http(q)
        found = 0
        order = list(paths)
        for i, q in enumerate(queries):
            for name in order[i % 3 :] + order[: i % 3]:  # rotate: no path always goes first
                t = time.perf_counter()
                paths[name](q)
                lat[name].append((time.perf_counter() - t) * 1000)

    size = direct.cat.indices(
        index=args.alias, format="json", bytes="b", h="index,docs.count,store.size,pri.store.size"
    )
    container.close()
    direct.close()

    print(f"\nhybrid search, top_k={args.top_k} ({n_candidates} candidates per retriever), {len(queries)} queries")
    print(f"at {total:,} chunks; {found}/{len(queries)} top-{args.top_k} lists hold the chunk the query was cut from")
    print(
        "| path | p50 ms | p95 ms | overhead over direct: p50 / p95 ms | median per-query overhead ms |\n"
        "|---|---|---|---|---|"
    )
    d50, d95 = statistics.median(lat["direct"]), percentile(lat["direct"], 0.95)
    labels = {
        "direct": "direct: opensearch-py BM25 `_search` + knn `_search`",
        "service": "`SearchService.search(mode=hybrid)`",
        "http": "`POST /v1/search` through the HTTP app (TestClient)",
    }
    for key, label in labels.items():
        p50, p95 = statistics.median(lat[key]), percentile(lat[key], 0.95)
        paired = statistics.median(x - d for x, d in zip(lat[key], lat["direct"], strict=True))
        extra = "— | —" if key == "direct" else f"{p50 - d50:+.1f} / {p95 - d95:+.1f} | {paired:+.1f}"
        print(f"| {label} | {p50:.1f} | {p95:.1f} | {extra} |")
    for row in size:
        print(
            f"\nindex {row['index']}: {int(row['docs.count']):,} docs, store size "
            f"{int(row['store.size']) / 2**20:.0f} MiB (primaries {int(row['pri.store.size']) / 2**20:.0f} MiB)"
        )
    if rate is not None:
        print(f"indexing rate: {rate:.0f} chunks/s")
    print(f"machine: {machine_line()}")


if __name__ == "__main__":
    main()
