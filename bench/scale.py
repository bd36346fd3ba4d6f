"""Scale curve: the embedded store and OpenSearch at 10k, 100k and 1M chunks.

    eval "$(scripts/services up)"
    .venv/bin/python -m bench.scale --store embedded --sizes 10000 100000 1000000
    .venv/bin/python -m bench.scale --store opensearch --sizes 10000 100000
    .venv/bin/python -m bench.scale --store opensearch --sizes 1000000 --batch 20000 --writers 2 --refresh-off
    .venv/bin/python -m bench.scale --report          # the table from bench/out/scale/results.json

Texts are real (docstring chunks, cycled under new ids as bench.opensearch_overhead does); vectors are synthetic
(384 dimensions, same generator). Indices are reused when they hold the right count (``--rebuild`` to redo):
embedded ones under bench/out/scale/embedded-<n>, OpenSearch ones under the alias ks-bench-scale-<n>.

Per point: build time (chunks/s through ``ChunkStore.add``; the texts' analysis and vectors are made once per
distinct chunk and are not timed), on-disk size, memory (embedded: RSS of a fresh process that opens the store
and runs one search; OpenSearch: node RSS and JVM heap from ``_nodes/stats``), hybrid search p50/p99 through
``SearchService.search`` with query embedding included (the real E5 model embeds every query inline, then the
query's synthetic vector is searched, since the documents' vectors are synthetic), and recall@10 of the store's
vector search (as the service asks: 50 candidates, top 10 kept) against an exact numpy search over the same
vectors. Results go to bench/out/scale/results.json; a later run of a point replaces that point's figures but
keeps its build figures when it reused the index.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import load_average, machine_line, percentile, proc_memory_mb
from bench.corpus import DIM, MODEL_ID, HashedVectors, chunk_record, corpus_chunks, read_corpus

OUT = Path(__file__).resolve().parent / "out" / "scale"
RESULTS = OUT / "results.json"
OS_PIDFILE = Path("/var/tmp/knowledge-search-services/opensearch/run/opensearch.pid")


class Chunks:
    """The first n chunks of the cycled corpus: records to write and the exact matrix of their vectors.

    Analysis (Sudachi) and the token-sum vector are computed once per distinct chunk; each copy only adds its
    own noise, so a million records cost about as much as the 62k distinct ones."""

    def __init__(self, n: int) -> None:
        from app.text.analysis import default_analyzer

        self.n = n
        self._analyzer = default_analyzer()
        self._vectors = HashedVectors()
        self._base: dict[tuple[str, int], tuple[str, np.ndarray]] = {}
        self.rows: list[tuple[str, str, int, Any]] = list(corpus_chunks(read_corpus(), n))
        self.ids = [f"{doc_id}-{ordinal:05d}" for doc_id, _, ordinal, _ in self.rows]
        self.matrix = np.empty((n, DIM), dtype=np.float32)
        t = time.perf_counter()
        for i, (_doc_id, title, ordinal, draft) in enumerate(self.rows):
            self.matrix[i] = self._vector(title, ordinal, draft.text, self.ids[i])
        print(f"  {n:,} chunks: tokens and vectors in {time.perf_counter() - t:.0f} s", flush=True)

    def prefix(self, n: int) -> Chunks:
        """The first n chunks (the cycled corpus is the same for every size, so a prefix is the smaller point)."""
        view = object.__new__(Chunks)
        view.__dict__.update(self.__dict__)
        view.n, view.rows, view.ids, view.matrix = n, self.rows[:n], self.ids[:n], self.matrix[:n]
        return view

    def keep(self, mask: list[bool]) -> None:
        """Only the chunks whose mask is true (an index that holds part of them)."""
        self.rows = [r for r, m in zip(self.rows, mask, strict=True) if m]
        self.ids = [c for c, m in zip(self.ids, mask, strict=True) if m]
        self.matrix = self.matrix[np.asarray(mask)]
        self.n = len(self.ids)

    def _vector(self, title: str, ordinal: int, text: str, chunk_id: str) -> np.ndarray:
        key = (title, ordinal)
        if key not in self._base:
            tokens = self._analyzer.tokens(text)
            self._base[key] = (" ".join(tokens), self._vectors.base(tokens))
        # HashedVectors.of_tokens(tokens, noise_key=chunk_id), without analysing the text of every copy again.
        return self._vectors.with_noise(self._base[key][1], chunk_id)

    def batches(self, size: int) -> Iterator[list[Any]]:

        for start in range(0, self.n, size):
            out = []
            for i in range(start, min(start + size, self.n)):
                doc_id, title, ordinal, draft = self.rows[i]
                out.append(chunk_record(doc_id, title, ordinal, draft, self._base[(title, ordinal)][0], self.matrix[i]))
            yield out

    def queries(self, count: int) -> list[tuple[str, np.ndarray]]:
        """(query text, its synthetic vector): the first 10 words of chunks picked with a fixed seed."""
        import re

        picked: list[tuple[str, np.ndarray]] = []
        seen: set[str] = set()
        for i in np.random.default_rng(7).permutation(self.n):
            words = re.findall(r"[A-Za-z][A-Za-z_]+", self.rows[i][3].text)
            q = " ".join(words[:10])
            if len(words) >= 6 and q not in seen:
                seen.add(q)
                picked.append((q, self._vectors.of_tokens(self._analyzer.tokens(q))))
                if len(picked) == count:
                    break
        return picked


class InlineE5:
    """The real query model runs on every query (its time and CPU are counted); the synthetic vector is returned."""

    model_id = MODEL_ID
    dimension = DIM

    def __init__(self, queries: dict[str, np.ndarray]) -> None:
        from app.providers.local import E5Embedder

        self._model = E5Embedder()
        self._queries = queries

    def embed_query(self, text: str) -> np.ndarray:
        self._model.embed_query(text)
        return self._queries[text]

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


def build(store: Any, chunks: Chunks, batch: int, writers: int) -> dict[str, Any]:
    """Write every chunk through ChunkStore.add; returns the build figures."""
    started = time.perf_counter()
    done = 0

    def add(records: list[Any]) -> int:
        store.add(records)
        return len(records)

    with ThreadPoolExecutor(writers) as pool:
        pending = []
        for records in chunks.batches(batch):
            pending.append(pool.submit(add, records))
            while len(pending) > writers:  # keep at most one batch queued per writer
                done += pending.pop(0).result()
                elapsed = time.perf_counter() - started
                if done % max(batch, 50_000) < batch:
                    print(f"  indexed {done:>9,} in {elapsed:6.0f} s = {done / elapsed:5.0f} chunks/s", flush=True)
        for f in pending:
            done += f.result()
    elapsed = time.perf_counter() - started
    print(f"  build: {done:,} chunks in {elapsed:.0f} s = {done / elapsed:.0f} chunks/s", flush=True)
    return {"build_s": round(elapsed, 1), "build_rate": round(done / elapsed, 1), "batch": batch, "writers": writers}


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def embedded_point(n: int, args: argparse.Namespace, chunks: Chunks) -> tuple[Any, dict[str, Any]]:
    from app.stores.vector.base import IndexInfo
    from app.stores.vector.embedded import EmbeddedChunkStore

    path = OUT / f"embedded-{n}" / "chunks.db"
    if args.rebuild and path.parent.exists():
        for p in path.parent.iterdir():
            p.unlink()
    store = EmbeddedChunkStore(path)
    store.ensure_ready(IndexInfo(embedding_model=MODEL_ID, dimension=DIM))
    fig: dict[str, Any] = {}
    if store.count() != n:
        if store.count():
            raise SystemExit(f"{path} holds {store.count():,} chunks, not {n:,}: run with --rebuild")
        fig.update(build(store, chunks, args.batch, 1))
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fig["disk_mb"] = round(dir_size(path.parent) / 2**20, 1)
    # Memory in a fresh process: open the store, load the matrix with one search, read VmRSS / VmHWM.
    probe = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--probe-embedded", str(path)], capture_output=True, text=True, check=True
    )
    fig.update(json.loads(probe.stdout.strip().splitlines()[-1]))
    return store, fig


def probe_embedded(path: Path) -> None:
    from app.stores.vector.base import ChunkFilter, IndexInfo
    from app.stores.vector.embedded import EmbeddedChunkStore

    before = proc_memory_mb(os.getpid())["rss_mb"]
    store = EmbeddedChunkStore(path)
    store.ensure_ready(IndexInfo(embedding_model=MODEL_ID, dimension=DIM))
    t = time.perf_counter()
    store.vector_search(np.ones(DIM, dtype=np.float32) / DIM**0.5, ChunkFilter(), 10)
    load_s = time.perf_counter() - t
    mem = proc_memory_mb(os.getpid())
    print(
        json.dumps(
            {
                "rss_mb": mem["rss_mb"],
                "hwm_mb": mem["hwm_mb"],
                "rss_store_mb": round(mem["rss_mb"] - before, 1),
                "matrix_load_s": round(load_s, 2),
            }
        )
    )


def opensearch_point(n: int, args: argparse.Namespace, chunks: Chunks) -> tuple[Any, dict[str, Any]]:
    from opensearchpy import helpers

    from app.core.config import Settings
    from app.stores.vector.base import IndexInfo
    from app.stores.vector.opensearch import OpenSearchChunkStore

    alias = f"ks-bench-scale-{n // 1000}k" if n < 1_000_000 else f"ks-bench-scale-{n // 1_000_000}m"
    store = OpenSearchChunkStore.from_settings(Settings(opensearch_index=alias, opensearch_timeout_s=120))
    raw = store._client
    if args.rebuild:
        raw.indices.delete(index=f"{alias}-*", ignore_unavailable=True)
    store.ensure_ready(IndexInfo(embedding_model=MODEL_ID, dimension=DIM))
    fig: dict[str, Any] = {}
    if store.count() != n and args.partial:
        # An unfinished build: measure the chunks it holds (batches written concurrently may leave gaps).
        held = {h["_id"] for h in helpers.scan(raw, index=alias, query={"_source": False}, size=5000)}
        chunks.keep([cid in held for cid in chunks.ids])
        print(f"  {alias} holds {len(held):,} of {n:,} chunks: measuring those (--partial)", flush=True)
        fig["partial_of"] = n
        fig.update(build_s=None, note="unfinished build: see the build log")
    elif store.count() != n:
        held: set[str] = set()
        if store.count() and args.resume:  # an unfinished build: write only the chunks it lacks
            held = {h["_id"] for h in helpers.scan(raw, index=alias, query={"_source": False}, size=5000)}
            print(f"  {alias} holds {len(held):,} of {n:,} chunks: writing the rest (--resume)", flush=True)
            fig["resumed_from"] = len(held)
        elif store.count():
            raise SystemExit(f"{alias} holds {store.count():,} chunks, not {n:,}: run with --rebuild or --resume")
        todo = chunks.prefix(n)
        if held:
            todo.keep([cid not in held for cid in todo.ids])
        if args.refresh_off:  # the bench's own index only; restored below
            raw.indices.put_settings(index=alias, body={"index": {"refresh_interval": "-1"}})
        try:
            fig.update(build(store, todo, args.batch, args.writers))
        finally:
            if args.refresh_off:
                raw.indices.put_settings(index=alias, body={"index": {"refresh_interval": None}})
                raw.indices.refresh(index=alias)
        fig["refresh_off"] = bool(args.refresh_off)
        time.sleep(5)
    row = raw.cat.indices(index=alias, format="json", bytes="b", h="index,docs.count,store.size")[0]
    fig["disk_mb"] = round(int(row["store.size"]) / 2**20, 1)
    fig["segments"] = len(raw.cat.segments(index=alias, format="json"))
    return store, fig


def opensearch_memory(store: Any) -> dict[str, Any]:
    stats = store._client.nodes.stats(metric="jvm,process")
    node = next(iter(stats["nodes"].values()))
    out = {"heap_used_mb": round(node["jvm"]["mem"]["heap_used_in_bytes"] / 2**20, 1)}
    out["heap_max_mb"] = round(node["jvm"]["mem"]["heap_max_in_bytes"] / 2**20, 1)
    with contextlib.suppress(OSError, ValueError):
        out.update(proc_memory_mb(int(OS_PIDFILE.read_text())))
    return out


def measure(store: Any, chunks: Chunks, n_queries: int, top_k: int) -> dict[str, Any]:
    from app.search.service import SearchService
    from app.stores.vector.base import ChunkFilter
    from app.text.analysis import default_analyzer

    queries = chunks.queries(n_queries)
    embedder = InlineE5(dict(queries))
    service = SearchService(store, embedder, default_analyzer())  # type: ignore[arg-type]
    flt = ChunkFilter()
    n_candidates = max(top_k * 4, 50)
    row_of = {cid: i for i, cid in enumerate(chunks.ids)}
    for q, _ in queries[:20]:  # warm-up: model, caches, connection pool
        service.search(q, flt, top_k, "hybrid")
    load_before = load_average()
    lat, parts = [], {"embed": [], "keyword": [], "vector": []}
    for q, _ in queries:
        t = time.perf_counter()
        outcome = service.search(q, flt, top_k, "hybrid")
        lat.append((time.perf_counter() - t) * 1000)
        for key in parts:
            parts[key].append(outcome.timings_ms.get(key, 0.0))
    load_after = load_average()
    recall, recall_k = [], []
    for _, qv in queries:
        scores = chunks.matrix @ qv
        exact = set(np.argpartition(-scores, top_k - 1)[:top_k].tolist())
        got = [row_of[h.chunk.chunk_id] for h in store.vector_search(qv, flt, n_candidates)[:top_k]]
        recall.append(len(exact & set(got)) / top_k)
        got_k = [row_of[h.chunk.chunk_id] for h in store.vector_search(qv, flt, top_k)]
        recall_k.append(len(exact & set(got_k)) / top_k)
    return {
        "queries": len(queries),
        "p50_ms": round(statistics.median(lat), 1),
        "p95_ms": round(percentile(lat, 0.95), 1),
        "p99_ms": round(percentile(lat, 0.99), 1),
        **{f"{k}_p50_ms": round(statistics.median(v), 1) for k, v in parts.items()},
        "recall10": round(float(np.mean(recall)), 4),
        "recall10_k10": round(float(np.mean(recall_k)), 4),
        "load_before": load_before,
        "load_after": load_after,
    }


def report(path: Path) -> None:
    results = json.loads(path.read_text()) if path.exists() else {}
    print(
        "| store | chunks | build chunks/s | disk MiB | memory | hybrid p50 / p99 ms "
        "(embed p50) | recall@10 | load before / after |\n|---|---|---|---|---|---|---|---|"
    )
    for key in sorted(results, key=lambda k: (k.split(":")[0], int(k.split(":")[1]))):
        r = results[key]
        if "p50_ms" not in r:  # built, not measured yet
            continue
        store, n = key.split(":")
        if store == "embedded":
            mem = f"RSS {r['rss_mb']:,.0f} MiB (store {r['rss_store_mb']:,.0f})"
        else:
            mem = f"node RSS {r.get('rss_mb', float('nan')):,.0f} MiB, heap {r['heap_used_mb']:,.0f} MiB"
        build = f"{r['build_rate']:,.0f}" if "build_rate" in r else "?"
        print(
            f"| {store} | {int(n):,} | {build} | {r['disk_mb']:,.0f} | {mem} | {r['p50_ms']} / {r['p99_ms']} "
            f"({r['embed_p50_ms']}) | {r['recall10']:.3f} | {r['load_before']} / {r['load_after']} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["embedded", "opensearch"], default="embedded")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1000, help="chunks per ChunkStore.add call")
    ap.add_argument("--writers", type=int, default=1, help="OpenSearch: concurrent add calls")
    ap.add_argument("--refresh-off", action="store_true", help="OpenSearch: refresh_interval -1 while building")
    ap.add_argument("--build-only", action="store_true", help="build (or check) the indices, measure nothing")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--partial", action="store_true", help="OpenSearch: measure an unfinished build's chunks")
    ap.add_argument(
        "--resume", action="store_true", help="OpenSearch: finish an unfinished build (build rate: the rest)"
    )
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the JSON file the figures go to")
    ap.add_argument("--probe-embedded", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_embedded:
        probe_embedded(args.probe_embedded)
        return
    if args.report:
        report(args.results)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    print(machine_line(), flush=True)
    chunks = Chunks(max(args.sizes))
    for n in sorted(args.sizes):
        print(f"{args.store} at {n:,} chunks (load {load_average()})", flush=True)
        view = chunks if n == chunks.n else chunks.prefix(n)
        point = embedded_point if args.store == "embedded" else opensearch_point
        store, fig = point(n, args, view)
        if not args.build_only:
            fig.update(measure(store, view, args.queries, args.top_k))
            if args.store == "opensearch":
                fig.update(opensearch_memory(store))
        store.close()
        results = json.loads(args.results.read_text()) if args.results.exists() else {}
        key = f"{args.store}:{view.n}"
        kept = {k: v for k, v in results.get(key, {}).items() if k.startswith(("build", "batch", "writers", "refresh"))}
        results[key] = {**kept, **fig, "machine": machine_line()}
        args.results.write_text(json.dumps(results, indent=1))
        print(json.dumps(results[key]), flush=True)
    report(args.results)


if __name__ == "__main__":
    main()
