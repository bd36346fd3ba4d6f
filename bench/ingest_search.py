"""Ingest throughput and search latency on the embedded default.

    .venv/bin/python -m bench.ingest_search [--target-chunks 10000] [--queries 200] [--reuse]

Prints: the embedder's raw throughput (passages/s), ingest throughput through the ingest service
(chunks/s, and its share of the raw figure), and search latency p50/p95 per mode with query embedding
included, in-process and through the HTTP app.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.corpus import docstring_documents

OUT = Path(__file__).resolve().parent / "out"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target-chunks", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--raw-sample", type=int, default=640, help="passages for the raw embedder figure")
    ap.add_argument("--reuse", action="store_true", help="keep an existing bench index instead of rebuilding")
    args = ap.parse_args()

    from app.access.caller import SYSTEM
    from app.container import build_container
    from app.core.config import Settings
    from app.ingest.chunking import chunk_document
    from app.ingest.parsers import parse
    from app.ingest.upload import Outcome, Upload
    from app.stores.vector.base import ChunkFilter

    data_dir = OUT / "embedded"
    if not args.reuse and data_dir.exists():
        shutil.rmtree(data_dir)
    settings = Settings(data_dir=data_dir, ingest_workers=0)
    container = build_container(settings)
    docs = list(docstring_documents(include_site_packages=True))

    # 1. raw embedder throughput on the same kind of chunks
    sample: list[str] = []
    for _, text in docs:
        parsed = parse(text.encode(), "text/markdown")
        sample += [d.text for d in chunk_document(parsed, settings.chunk_size, settings.chunk_overlap)]
        if len(sample) >= args.raw_sample:
            break
    sample = sample[: args.raw_sample]
    t = time.perf_counter()
    for i in range(0, len(sample), settings.embed_batch_size):
        container.embedder.embed_documents(sample[i : i + settings.embed_batch_size])
    raw = len(sample) / (time.perf_counter() - t)
    print(f"embedder raw throughput: {raw:.1f} passages/s ({len(sample)} passages, batch {settings.embed_batch_size})")

    # 2. ingest until the target chunk count
    existing = container.store.count()
    ingest_rate = None
    if existing < args.target_chunks:
        t = time.perf_counter()
        chunks = n_docs = 0
        for name, text in docs:
            result = container.ingest.upsert(
                Upload.of_bytes(text.encode(), filename=f"{name}.md", collection="bench"), SYSTEM
            )
            if result.outcome == Outcome.CREATED:
                chunks += result.document.chunk_count
                n_docs += 1
            if existing + chunks >= args.target_chunks:
                break
            if n_docs and n_docs % 50 == 0:
                print(f"  ... {n_docs} documents, {chunks} chunks, {chunks / (time.perf_counter() - t):.1f} chunks/s")
        elapsed = time.perf_counter() - t
        ingest_rate = chunks / elapsed
        print(
            f"ingest: {n_docs} documents, {chunks} chunks in {elapsed:.1f} s = {ingest_rate:.1f} chunks/s "
            f"({100 * ingest_rate / raw:.0f}% of the embedder's raw throughput)"
        )
    total = container.store.count()
    print(f"index: {total} chunks")

    # 3. search latency, query embedding included
    queries = []
    for _, text in docs[:: max(1, len(docs) // args.queries)]:
        body = re.sub(r"^#.*$", "", text, flags=re.MULTILINE).strip()
        first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0][:200]
        if len(first) > 15:
            queries.append(first)
    queries = queries[: args.queries]
    flt = ChunkFilter()
    container.search.search("warm up", flt, 10, "hybrid")
    rows = []
    for mode in ("hybrid", "keyword", "semantic"):
        lat = []
        for q in queries:
            t = time.perf_counter()
            container.search.search(q, flt, 10, mode)  # type: ignore[arg-type]
            lat.append((time.perf_counter() - t) * 1000)
        rows.append(("service", mode, statistics.median(lat), percentile(lat, 0.95)))

    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(container=container)) as client:
        lat = []
        for q in queries:
            t = time.perf_counter()
            r = client.post("/v1/search", json={"query": q, "top_k": 10, "mode": "hybrid"})
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        rows.append(("HTTP app", "hybrid", statistics.median(lat), percentile(lat, 0.95)))
    container.close()

    print(f"\nsearch latency over {len(queries)} queries at {total} chunks (query embedding included):")
    print("| path | mode | p50 ms | p95 ms |\n|---|---|---|---|")
    for path, mode, p50, p95 in rows:
        print(f"| {path} | {mode} | {p50:.1f} | {p95:.1f} |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(
        f"\nmachine: {platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()}, "
        f"python {platform.python_version()}, commit {commit}"
    )


if __name__ == "__main__":
    main()
