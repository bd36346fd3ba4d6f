"""Chat latency on the embedded default at 10,000 chunks: ``ChatService.ask`` end to end, in process.

    .venv/bin/python -m bench.chat_latency [--chunks 10000] [--queries 200]

The index is the scale benchmark's (bench/scale.py): real docstring chunks, chunked as uploads are, with
synthetic vectors (embedding 10,000 chunks with the real model takes hours on 2 cores), built once into
bench/out/chat/embedded-<n>. The real E5 model embeds every question inline (its time is counted) and the
question's synthetic vector is searched. Since synthetic cosines mean nothing, the relevance floor is off
(``min_similarity`` -1), so every question goes through the whole path: hybrid search of the candidates, the
second stage, each document's best passage first, the extractive answer over 5 sources, and the two
conversation rows written to a SQLite metadata database. Questions: the first 10 words of chunks picked with a
fixed seed, each asked once after 20 warm-up questions. Reports p50 / p95 / p99 and the load average.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import load_average, machine_line, percentile
from bench.corpus import DIM, MODEL_ID

OUT = Path(__file__).resolve().parent / "out" / "chat"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    from app.chat.service import ChatService
    from app.core.config import Settings
    from app.providers.local import ExtractiveAnswerer
    from app.search.service import SearchService
    from app.stores.sql import migrate
    from app.stores.sql.session import build_engine, build_session_factory
    from app.stores.vector.base import ChunkFilter, IndexInfo
    from app.stores.vector.embedded import EmbeddedChunkStore
    from app.text.analysis import default_analyzer
    from bench.scale import Chunks, InlineE5, build

    try:
        from app.text.analysis import default_analyzer
    except ImportError:  # the layout before the analyzer moved to app.text (to measure an older commit alike)
        from app.search.analysis import default_analyzer  # type: ignore[no-redef]

    chunks = Chunks(args.chunks)
    store = EmbeddedChunkStore(OUT / f"embedded-{args.chunks}" / "chunks.db")
    store.ensure_ready(IndexInfo(embedding_model=MODEL_ID, dimension=DIM))
    if store.count() != args.chunks:
        if store.count():
            raise SystemExit(f"{OUT} holds another index: delete it")
        print(f"building {args.chunks:,} chunks: {build(store, chunks, 1000, 1)}", flush=True)
    queries = chunks.queries(args.queries + 20)
    analyzer = default_analyzer()
    search = SearchService(store, InlineE5(dict(queries)), analyzer)  # type: ignore[arg-type]
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="ks-chat-latency-")))
    engine = build_engine(settings)
    migrate.upgrade(engine)
    options = {"top_k": settings.chat_top_k, "min_similarity": -1.0}
    accepted = inspect.signature(ChatService).parameters
    if "second_stage" in accepted:  # the chat of this version re-scores its candidates by their best sentence
        from app.search.second_stage import SentenceRescorer

        options["second_stage"] = SentenceRescorer(
            analyzer, depth=settings.second_stage_depth, weight=settings.second_stage_weight
        )
        options["candidates"] = settings.chat_candidates
    chat = ChatService(build_session_factory(engine), search, ExtractiveAnswerer(analyzer), **options)  # type: ignore[arg-type]

    flt = ChunkFilter()
    for question, _ in queries[:20]:
        chat.ask(question, flt)
    before = load_average()
    times, grounded = [], 0
    for question, _ in queries[20:]:
        started = time.perf_counter()
        answer = chat.ask(question, flt)
        times.append((time.perf_counter() - started) * 1000)
        grounded += answer.grounded
    print(machine_line())
    print(
        f"chat at {store.count():,} chunks, {len(times)} questions ({grounded} answered): "
        f"p50 {statistics.median(times):.1f} ms, p95 {percentile(times, 95):.1f}, p99 {percentile(times, 99):.1f}; "
        f"load average {before} -> {load_average()}"
    )


if __name__ == "__main__":
    main()
