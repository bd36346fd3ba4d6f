"""Chat settings on a grid, over one or more eval collections: how each choice moves the chat figures.

    KS_DATA_DIR=... .venv/bin/python -m bench.tune_chat bench/data/licenses-en:chat-dev.jsonl \\
        bench/data/debian-docs-ja:chat-dev.jsonl [--coverage 0.4 0.5 0.6] [--weight 0 0.3 0.5] ...

Each set must already be ingested in ``eval-<folder>`` (``knowledge-search eval``). Questions are embedded once
and reused for every point of the grid; each point builds a ChatService with those settings and asks every
question through it, scored as ``knowledge-search eval --chat`` scores them. Use it on dev halves only.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np


class CachedQueries:
    """The configured embedder, each question embedded once for the whole grid."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.model_id, self.dimension = inner, inner.model_id, inner.dimension
        self._seen: dict[str, np.ndarray] = {}

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self._seen:
            self._seen[text] = self.inner.embed_query(text)
        return self._seen[text]

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        return self.inner.embed_documents(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", help="FOLDER:QUESTIONS.jsonl")
    parser.add_argument("--coverage", type=float, nargs="+", default=[0.5])
    parser.add_argument("--weight", type=float, nargs="+", default=[0.5], help="second-stage weight")
    parser.add_argument("--candidates", type=int, nargs="+", default=[12])
    parser.add_argument("--similarity", type=float, nargs="+", default=[0.8], help="relevance floor (cosine)")
    parser.add_argument("--context-weight", type=float, nargs="+", default=[1.0])
    args = parser.parse_args()

    from app.chat.service import ChatService
    from app.container import build_container
    from app.core.config import Settings
    from app.eval.chat import aggregate, evaluate_chat, load_questions
    from app.providers.factory import build_embedder
    from app.providers.local import ExtractiveAnswerer
    from app.search.second_stage import SentenceRescorer

    settings = Settings()
    container = build_container(settings, embedder=CachedQueries(build_embedder(settings)))
    sets = []
    for spec in args.sets:
        folder, _, name = spec.partition(":")
        path = Path(folder) / (name or "chat-dev.jsonl")
        sets.append((f"eval-{Path(folder).name}", path, load_questions(path)))
    store = container.store
    grid = itertools.product(args.coverage, args.weight, args.candidates, args.similarity, args.context_weight)
    print("coverage weight candidates similarity ctx-weight | per set: cite-acc NC-acc | mean")
    for coverage, weight, candidates, similarity, context_weight in grid:
        if hasattr(store, "_context_weight"):
            store._context_weight = context_weight  # the embedded store's BM25 weight, set per point
        container.chat = ChatService(
            container.sessions,
            container.search,
            ExtractiveAnswerer(container.analyzer, max_sentences=settings.chat_max_sentences, min_coverage=coverage),
            top_k=settings.chat_top_k,
            candidates=candidates,
            second_stage=SentenceRescorer(container.analyzer, depth=max(candidates, 1), weight=weight),
            min_similarity=similarity,
        )
        cells, scores = [], []
        for collection, path, questions in sets:
            result = evaluate_chat(container, collection, path, questions)
            metrics, _ = aggregate(result.outcomes)
            cite, call = metrics["citation_accuracy"] or 0.0, metrics["not_covered_accuracy"] or 0.0
            cells.append(f"{cite:.3f} {call:.3f}")
            scores += [cite, call]
        print(
            f"{coverage:<8} {weight:<6} {candidates:<10} {similarity:<10} {context_weight:<10} | "
            + " | ".join(cells)
            + f" | {sum(scores) / len(scores):.3f}",
            flush=True,
        )
    container.close()


if __name__ == "__main__":
    main()
