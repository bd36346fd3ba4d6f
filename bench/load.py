"""Load test: a real `knowledge-search serve` over loopback at concurrency 1, 8 and 32, for search and chat.

    .venv/bin/python -m bench.load --build                    # once: ~10k chunks with the real model
    .venv/bin/python -m bench.load [--levels 1 8 32] [--requests 400] [--time-cap 60]
    eval "$(scripts/services up)"; .venv/bin/python -m bench.load --backend opensearch   # same chunks in OpenSearch

The index is bench/out/load/data (KS_DATA_DIR of the server): docstring documents ingested through the ingest
service with the local E5 model until ``--target-chunks``, starting from a copy of bench/out/embedded when that
exists. ``--backend opensearch`` copies those chunks, vectors included, into the alias ks-bench-load first.

The client is a bounded asyncio httpx client: per level, ``concurrency`` tasks share ``--requests`` requests and
stop at ``--time-cap`` seconds, whichever comes first. Queries are the first sentences of the indexed documents,
in a fixed order. Per level: requests, errors, throughput, p50/p95/p99 latency, the server's CPU (its process's
utime + stime over the level's wall time; 200% is both cores) and its RSS (current, and the peak VmHWM so far).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import cpu_seconds, load_average, machine_line, percentile, proc_memory_mb, start_server
from bench.corpus import docstring_documents

OUT = Path(__file__).resolve().parent / "out"
DATA = OUT / "load" / "data"
SEED = OUT / "embedded"
OS_ALIAS = "ks-bench-load"


class DocumentVectors:
    """Stands in for the model at build time (``--quick-vectors``): every chunk of a document gets the real
    model's passage vector of the document's first sentence plus a little per-chunk noise. Embedding 10,000
    chunks with the model takes 10 minutes on a quiet machine and hours on a busy one; this takes one model
    call per document, and the queries (those first sentences, embedded by the server's real model) still
    land near their documents, so the vector search and chat's similarity floor behave as on real vectors."""

    model_id = "multilingual-e5-small-q4"
    dimension = 384

    def __init__(self) -> None:
        self.current: Any = None

    def embed_documents(self, texts: list[str]) -> Any:
        import zlib

        import numpy as np

        out = []
        for t in texts:
            noise = np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dimension).astype(np.float32)
            v = self.current + 0.35 * noise / np.linalg.norm(noise)
            out.append(v / np.linalg.norm(v))
        return np.stack(out).astype(np.float32)

    def embed_query(self, text: str) -> Any:
        raise NotImplementedError


def build(target: int, quick_vectors: bool = False) -> None:
    """Ingest docstring documents with the real model (or ``DocumentVectors``) until the index holds ``target``
    chunks."""
    from app.access.caller import SYSTEM
    from app.container import build_container
    from app.core.config import Settings
    from app.ingest.upload import Outcome, Upload
    from app.providers.local import E5Embedder

    if not quick_vectors and not DATA.exists() and (SEED / "chunks.db").exists():
        shutil.copytree(SEED, DATA)
        print(f"started from a copy of {SEED}", flush=True)
    stand_in = DocumentVectors() if quick_vectors else None
    container = build_container(Settings(data_dir=DATA, ingest_workers=0), embedder=stand_in)
    existing = container.store.count()
    started, added = time.perf_counter(), 0
    model = E5Embedder() if stand_in is not None else None
    documents = docstring_documents(include_site_packages=True)
    ahead: list[tuple[str, str, Any]] = []  # (name, text, vector of its first sentence)
    while existing + added < target:
        if not ahead:
            part = list(itertools.islice(documents, 32))
            if not part:
                break
            vectors = model.embed_documents([first_sentence(t) for _, t in part]) if model else [None] * len(part)
            ahead = [(n, t, v) for (n, t), v in zip(part, vectors, strict=True)]  # one model call for 32
        name, text, vector = ahead.pop(0)
        if stand_in is not None:
            stand_in.current = vector
        result = container.ingest.upsert(
            Upload.of_bytes(text.encode(), filename=f"{name}.md", collection="bench"), SYSTEM
        )
        if result.outcome == Outcome.CREATED:
            added += result.document.chunk_count
            print(f"  {existing + added:,} chunks ({added / (time.perf_counter() - started):.1f}/s)", flush=True)
    print(f"index: {container.store.count():,} chunks in {DATA}")
    container.close()


def copy_to_opensearch() -> None:
    """The embedded index's chunks, vectors included, into the ks-bench-load alias (skipped when it has them)."""
    from app.core.config import Settings
    from app.stores.vector.embedded import EmbeddedChunkStore
    from app.stores.vector.opensearch import OpenSearchChunkStore

    source = EmbeddedChunkStore(DATA / "chunks.db")
    info = source.index_info()
    assert info is not None, f"{DATA} holds no index: run with --build first"
    target = OpenSearchChunkStore.from_settings(Settings(opensearch_index=OS_ALIAS))
    target.ensure_ready(info)
    if target.count() == source.count():
        print(f"reusing {OS_ALIAS}: {target.count():,} chunks")
        return
    for document_id in sorted(source.document_ids()):
        records = source.get_chunks(document_id)
        rows = source._conn.execute(
            "SELECT chunk_id, vector FROM chunks WHERE document_id = ? AND live = 1", (document_id,)
        ).fetchall()
        fts = dict(
            source._conn.execute(
                "SELECT c.chunk_id, f.tokens FROM chunks c JOIN chunks_fts f ON f.rowid = c.rowid"
                " WHERE c.document_id = ?",
                (document_id,),
            ).fetchall()
        )
        import numpy as np

        vectors = {cid: np.frombuffer(v, dtype=np.float32) for cid, v in rows}
        for r in records:
            r.vector, r.tokens = vectors[r.chunk_id], fts[r.chunk_id]
        target.add(records)
    print(f"copied {target.count():,} chunks into {OS_ALIAS}")
    source.close()
    target.close()


def queries(count: int) -> list[str]:
    """First sentences of the documents in the index (they were ingested in this order)."""
    out: list[str] = []
    for _, text in docstring_documents(include_site_packages=True):
        first = first_sentence(text)
        if len(first) > 15:
            out.append(first)
        if len(out) == count:
            break
    return out


def first_sentence(text: str) -> str:
    body = re.sub(r"^#.*$", "", text, flags=re.MULTILINE).strip()
    return re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0][:200]


def server_env(backend: str) -> dict[str, str]:
    env = {"KS_DATA_DIR": str(DATA), "KS_INGEST_WORKERS": "0", "KS_LOG_FORMAT": "text", "KS_RATE_LIMIT_PER_MINUTE": "0"}
    if backend == "opensearch":
        env.update(
            KS_VECTOR_STORE="opensearch",
            KS_OPENSEARCH_INDEX=OS_ALIAS,
            KS_OPENSEARCH_URL=os.environ.get("KS_OPENSEARCH_URL", "http://127.0.0.1:9200"),
        )
    return env


async def run_level(
    url: str, path: str, bodies: list[dict[str, Any]], concurrency: int, requests: int, time_cap: float, pid: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        for body in bodies[:5]:  # warm-up, not counted
            await client.post(path, json=body)
        started = time.perf_counter()
        deadline = started + time_cap
        cpu_before = cpu_seconds(pid)

        async def worker() -> None:
            nonlocal next_index
            while next_index < requests and time.perf_counter() < deadline:
                body = bodies[next_index % len(bodies)]
                next_index += 1
                t = time.perf_counter()
                try:
                    r = await client.post(path, json=body)
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                latencies.append((time.perf_counter() - t) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    mem = proc_memory_mb(pid)
    return {
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "cpu_pct": 100 * cpu / wall,
        "rss_mb": mem["rss_mb"],
        "hwm_mb": mem["hwm_mb"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="store_true", help="ingest until --target-chunks, then exit")
    ap.add_argument("--target-chunks", type=int, default=10_000)
    ap.add_argument("--quick-vectors", action="store_true", help="--build: see DocumentVectors")
    ap.add_argument("--backend", choices=["embedded", "opensearch"], default="embedded")
    ap.add_argument("--endpoints", nargs="+", choices=["search", "chat"], default=["search", "chat"])
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=400, help="requests per level at most")
    ap.add_argument("--time-cap", type=float, default=60.0, help="seconds per level at most")
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--top-k", type=int, default=10)
    args = ap.parse_args()
    if args.build:
        build(args.target_chunks, args.quick_vectors)
        return
    if args.backend == "opensearch":
        copy_to_opensearch()

    texts = queries(args.queries)
    bodies = {
        "search": ("/v1/search", [{"query": q, "top_k": args.top_k, "mode": "hybrid"} for q in texts]),
        "chat": ("/v1/chat", [{"message": q, "stream": False} for q in texts]),
    }
    print(machine_line(), flush=True)
    server, url = start_server(server_env(args.backend))
    rows = []
    try:
        chunks = httpx.get(f"{url}/v1/documents", params={"limit": 1}).status_code
        assert chunks == 200, "the server does not list documents"
        for endpoint in args.endpoints:
            path, body = bodies[endpoint]
            for c in args.levels:
                load = load_average()
                r = asyncio.run(run_level(url, path, body, c, args.requests, args.time_cap, server.pid))
                r.update(endpoint=endpoint, concurrency=c, load_before=load, load_after=load_average())
                rows.append(r)
                print(
                    f"  {endpoint} c={c}: {r['requests']} requests, {r['errors']} errors {r['error_kinds'] or ''}, "
                    f"{r['rps']:.1f} rps, p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, CPU {r['cpu_pct']:.0f}%, "
                    f"load {load} -> {r['load_after']}",
                    flush=True,
                )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    print(f"\nbackend {args.backend}, top_k {args.top_k}, {len(texts)} distinct queries")
    print(
        "| endpoint | concurrency | requests | errors | throughput rps | p50 ms | p95 ms | p99 ms | server CPU "
        "| server RSS / peak MiB | load before → after |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['endpoint']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} "
            f"| {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {r['cpu_pct']:.0f}% "
            f"| {r['rss_mb']:.0f} / {r['hwm_mb']:.0f} | {r['load_before']} → {r['load_after']} |"
        )


if __name__ == "__main__":
    main()
