"""Queued ingest at scale through the API: N documents posted with wait=false to a real `knowledge-search serve`.

    .venv/bin/python -m bench.ingest_jobs [--documents 10000] [--workers 1]

Prints documents/s and chunks/s until every job has finished, the server's peak RSS (VmHWM), and how busy the
pipeline kept the embedder, two ways: the time the server's embedder spent embedding over the wall time of the
run (from its `ks_embedding_seconds_total{kind="documents"}` metric), and the pipeline's chunks/s over the
embedder's raw throughput on the chunks those documents make (cut by the service's own chunker, embedded in
batches of 32 in this process before the server starts).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import start_server
from bench.corpus import docstring_documents

OUT = Path(__file__).resolve().parent / "out" / "jobs"


def _texts(n: int) -> list[str]:
    """Short documents: one docstring section each (about one chunk), deterministic."""
    out: list[str] = []
    for _, text in docstring_documents(include_site_packages=True):
        for part in text.split("\n\n## ")[1:]:
            if len(part) > 120:
                out.append("## " + part[:1200])
                if len(out) == n:
                    return out
    return out


def _embedding_seconds(http: httpx.Client) -> float:
    """The server's time spent embedding documents so far (Prometheus counter)."""
    for line in http.get("/metrics").text.splitlines():
        if line.startswith('ks_embedding_seconds_total{kind="documents"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=1, help="KS_INGEST_WORKERS of the server")
    ap.add_argument("--raw-sample", type=int, default=512)
    args = ap.parse_args()

    texts = _texts(args.documents)
    from app.providers.local import E5Embedder

    embedder = E5Embedder()
    from app.core.config import Settings
    from app.ingest.chunking import chunk_document
    from app.ingest.parsers import parse

    settings = Settings()
    sample = [
        draft.text
        for text in texts[: args.raw_sample]
        for draft in chunk_document(parse(text.encode(), "text/markdown"), settings.chunk_size, settings.chunk_overlap)
    ][: args.raw_sample]
    embedder.embed_documents(sample[:4])  # warm up
    t = time.perf_counter()
    for i in range(0, len(sample), 32):
        embedder.embed_documents(sample[i : i + 32])
    raw = len(sample) / (time.perf_counter() - t)
    del embedder
    print(f"embedder raw throughput on {len(sample)} of their chunks: {raw:.1f} chunks/s")

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    server, url = start_server(
        {
            "KS_DATA_DIR": str(OUT / "data"),
            "KS_INGEST_WORKERS": str(args.workers),
            "KS_LOG_FORMAT": "text",
            "KS_RATE_LIMIT_PER_MINUTE": "0",
        }
    )
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            started = time.perf_counter()

            def post(text: str) -> int:
                return http.post("/v1/documents?wait=false", json={"text": text, "format": "markdown"}).status_code

            embed_before = _embedding_seconds(http)
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(post, texts))
            accepted = time.perf_counter() - started
            bad = Counter(s for s in statuses if s not in (200, 202))
            duplicates = statuses.count(200)  # the same text posted again: answered with the existing document
            print(
                f"posted {len(texts)} documents in {accepted:.1f} s ({len(texts) / accepted:.0f}/s): "
                f"{statuses.count(202)} queued, {duplicates} duplicates, refused {dict(bad) or 'none'}"
            )
            pending = 1
            while pending:
                time.sleep(2)
                pending = sum(
                    len(http.get("/v1/jobs", params={"status": s, "limit": 500}).json()["items"])
                    for s in ("queued", "running")
                )
                print(f"  ... {pending}+ jobs pending after {time.perf_counter() - started:.0f} s", flush=True)
            total = time.perf_counter() - started
            embedding = _embedding_seconds(http) - embed_before
            failed = len(http.get("/v1/jobs", params={"status": "failed", "limit": 500}).json()["items"])
            chunks, cursor = 0, None
            while True:
                page = http.get("/v1/documents", params={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
                chunks += sum(d["chunk_count"] for d in page["items"])
                cursor = page["next_cursor"]
                if not cursor:
                    break
        rss = _peak_rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    rate = chunks / total
    print(
        "\n| documents | chunks | all jobs done in | documents/s | chunks/s | embedder busy (metric) "
        "| embedder raw | chunks/s ÷ raw | failed | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {len(texts)} | {chunks} | {total:.0f} s | {len(texts) / total:.1f} | {rate:.1f} "
        f"| {100 * embedding / total:.0f}% | {raw:.1f}/s | {100 * rate / raw:.0f}% | {failed} | {rss:.0f} MB |"
    )


if __name__ == "__main__":
    main()
