"""Ingest a BEIR corpus into a scratch collection, then run every query in every mode, and ask the questions
of each chat question file (``app.eval.chat``).

Everything goes through the container's IngestService and SearchService, so the figures are those of the
configured backend (embedded or OpenSearch) and models. Each corpus document becomes one document with
metadata ``{"beir_id": <_id>}``; retrieved chunks map back to corpus ids through it, and several chunks of
one document count once, at their best rank.

Each query runs twice per mode: with top_k=10 (the API's default, whose candidate pool hybrid fusion
normalizes over) for nDCG@10, Recall@10, MRR@10 and the latency, and with top_k=100 for Recall@100.

Latency: each query is embedded once (timed), and that time is added to every mode that embeds the query
(semantic, hybrid), so a mode's figure is what one search costs without repeating the embedding for every
fusion variant. Modes are interleaved query by query, so a change in machine load hits them alike.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.errors import AppError
from app.eval.chat import ChatResult, evaluate_chat, load_questions
from app.eval.dataset import BeirDataset, CorpusDoc, DatasetError
from app.eval.metrics import mean, percentile, query_metrics, unique_in_order
from app.search.fusion import FUSION_METHODS, Fusion
from app.search.service import Mode, SearchOutcome, SearchService
from app.stores.vector.base import ChunkFilter

if TYPE_CHECKING:
    from app.container import Container

log = logging.getLogger(__name__)

EVAL_MARK = "knowledge-search eval"
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
TOP_K = 10  # the search behind the @10 figures and the latency: the API's default top_k
DEPTH = 100  # a second, deeper search per query and mode, for Recall@100
# (stage, done, total): stage is "ingest" or "queries"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ModeSpec:
    mode: Mode
    fusion: Fusion | None = None
    rerank: bool = False
    default: bool = False  # the service's configured fusion

    @property
    def label(self) -> str:
        if self.mode != "hybrid" or self.fusion is None:
            return self.mode
        return f"{'hybrid+rerank' if self.rerank else 'hybrid'} {self.fusion.label}"


@dataclass(slots=True)
class IngestSummary:
    collection: str
    documents: int
    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    seconds: float = 0.0
    reused: bool = False


@dataclass(slots=True)
class ModeResult:
    spec: ModeSpec
    metrics: dict[str, float]
    p50_ms: float
    p95_ms: float
    per_query: dict[str, dict[str, float]]


@dataclass(slots=True)
class EvalReport:
    dataset: BeirDataset
    ingest: IngestSummary
    results: list[ModeResult]
    queries: int
    backend: str
    embedding_model: str
    reranker: bool
    machine: dict[str, Any] = field(default_factory=dict)
    chat: list[ChatResult] = field(default_factory=list)
    chat_model: str = ""
    second_stage: str = "none"  # KS_SECOND_STAGE: applied to the hybrid rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": {
                "name": self.dataset.name,
                "path": str(self.dataset.root),
                "split": self.dataset.split,
                "documents": len(self.dataset.corpus),
                "queries": self.queries,
                "corpus_sha256": self.dataset.fingerprint,
                "warnings": self.dataset.warnings,
            },
            "collection": self.ingest.collection,
            "backend": self.backend,
            "embedding_model": self.embedding_model,
            "reranker": self.reranker,
            "second_stage": self.second_stage,
            "top_k": TOP_K,
            "depth": DEPTH,
            "ingest": asdict(self.ingest),
            "modes": [
                {
                    "label": r.spec.label,
                    "mode": r.spec.mode,
                    "fusion": None
                    if r.spec.fusion is None
                    else {
                        "method": r.spec.fusion.method,
                        "k": r.spec.fusion.k,
                        "weight_vector": r.spec.fusion.weight_vector,
                    },
                    "rerank": r.spec.rerank,
                    "default": r.spec.default,
                    "metrics": {k: round(v, 4) for k, v in r.metrics.items()},
                    "latency_ms": {"p50": round(r.p50_ms, 1), "p95": round(r.p95_ms, 1)},
                    "per_query": {q: {k: round(v, 4) for k, v in m.items()} for q, m in r.per_query.items()},
                }
                for r in self.results
            ],
            "chat_model": self.chat_model,
            "chat": [r.to_dict() for r in self.chat],
            "machine": self.machine,
        }


def parse_fusion(spec: str, default: Fusion) -> Fusion:
    """``rrf``, ``rrf:60``, ``minmax``, ``minmax:0.3``, ``zscore:0.7``; a value left out takes the default's."""
    method, _, value = spec.strip().partition(":")
    if method not in FUSION_METHODS:
        raise ValueError(f"--fusion {spec!r}: the method is one of {', '.join(FUSION_METHODS)}")
    try:
        if method == "rrf":
            return replace(default, method="rrf", k=int(value) if value else default.k)
        return replace(default, method=method, weight_vector=float(value) if value else default.weight_vector)
    except ValueError as exc:
        raise ValueError(f"--fusion {spec!r}: {exc}") from exc


def plan_modes(search: SearchService, fusions: Sequence[Fusion] = ()) -> list[ModeSpec]:
    """keyword, semantic, hybrid with each fusion (default: each method at the configured settings), and
    hybrid+rerank with the configured fusion when a reranker is configured."""
    default = search.fusion
    chosen = list(fusions) or [replace(default, method=m) for m in FUSION_METHODS]
    by_label = {f.label: f for f in chosen}
    modes = [ModeSpec("keyword"), ModeSpec("semantic")]
    modes += [ModeSpec("hybrid", f, default=label == default.label) for label, f in by_label.items()]
    if search.has_reranker:
        modes.append(ModeSpec("hybrid", default, rerank=True))
    return modes


def collection_for(dataset: BeirDataset) -> str:
    """``eval-<dataset folder name>``, cut to a valid collection name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.name).strip("-.") or "dataset"
    return f"eval-{slug}"[:128]


def run(
    container: Container,
    dataset: BeirDataset,
    *,
    collection: str | None = None,
    fusions: Sequence[Fusion] = (),
    max_queries: int | None = None,
    progress: Progress | None = None,
    chat: Sequence[Path] = (),
    retrieval: bool = True,
) -> EvalReport:
    """Retrieval (unless ``retrieval`` is False) and then each chat question file in ``chat``."""
    collection = collection or collection_for(dataset)
    question_sets = [(path, load_questions(path)) for path in chat]  # a bad file fails before any work
    load_before = _load()
    summary = ingest(container, dataset, collection, progress)
    modes = plan_modes(container.search, fusions)
    queries = dataset.evaluated[:max_queries] if max_queries else dataset.evaluated
    results = evaluate(container, dataset, collection, modes, queries, progress) if retrieval else []
    chat_results = [
        evaluate_chat(container, collection, path, questions[:max_queries] if max_queries else questions, progress)
        for path, questions in question_sets
    ]
    settings = container.settings
    return EvalReport(
        dataset=dataset,
        ingest=summary,
        results=results,
        queries=len(queries) if retrieval else 0,
        chat=chat_results,
        chat_model=container.chat_model.model_id,
        second_stage=settings.second_stage,
        backend=settings.vector_store,
        embedding_model=container.embedder.model_id,
        reranker=container.search.has_reranker,
        machine={
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": _load(),
        },
    )


# --- ingest --------------------------------------------------------------------------------------------
def ingest(
    container: Container, dataset: BeirDataset, collection: str, progress: Progress | None = None
) -> IngestSummary:
    """Put the corpus in ``collection`` once: a later run with the same corpus.jsonl reuses it. An interrupted
    ingest resumes (documents already indexed are recognised by their content)."""
    from app.access.caller import SYSTEM
    from app.ingest.upload import Outcome, Upload

    marker = f"{EVAL_MARK}: {dataset.name}, {len(dataset.corpus)} documents, corpus.jsonl sha256 {dataset.fingerprint}"
    summary = IngestSummary(collection=collection, documents=len(dataset.corpus))
    description, has_documents = _collection_state(container, collection)
    if description == marker:
        summary.reused = True
        return summary
    if description and description.startswith(EVAL_MARK) and not description.startswith(marker):
        raise DatasetError(
            f"collection {collection!r} holds another corpus ({description}); pass --collection NAME to use a new "
            "one, or delete that collection's documents first"
        )
    if has_documents and not (description or "").startswith(EVAL_MARK):
        raise DatasetError(
            f"collection {collection!r} already holds documents the eval command did not put there; "
            "pass --collection NAME for a scratch collection"
        )
    _describe(container, collection, f"{marker} (incomplete)")
    started = time.perf_counter()
    for n, doc in enumerate(dataset.corpus, start=1):
        upload = Upload.of_bytes(
            document_bytes(doc),
            collection=collection,
            filename=re.sub(r"[^\w.-]+", "_", doc.id)[:200] + _EXTENSIONS[doc.format],
            title=(doc.title or doc.id)[:512],
            metadata={"beir_id": doc.id},
        )
        try:
            if container.ingest.upsert(upload, SYSTEM).outcome == Outcome.UNCHANGED:
                summary.unchanged += 1
            else:
                summary.indexed += 1
        except AppError as exc:
            summary.failed += 1
            log.warning("eval: corpus document %s was not ingested: %s", doc.id, exc.detail)
        if progress is not None:
            progress("ingest", n, len(dataset.corpus))
    summary.seconds = round(time.perf_counter() - started, 1)
    if summary.failed == 0:
        _describe(container, collection, marker)
    return summary


_EXTENSIONS = {"text": ".txt", "markdown": ".md", "html": ".html"}


def document_bytes(doc: CorpusDoc) -> bytes:
    """What is uploaded for a corpus document: its title line, then its text (BEIR's "title + text"); in
    Markdown the title line is the document's heading, and HTML is uploaded as it is."""
    if doc.format == "html" or not doc.title:
        return doc.text.encode("utf-8")
    head = f"# {doc.title}" if doc.format == "markdown" else doc.title
    return f"{head}\n\n{doc.text}".encode()


def _collection_state(container: Container, collection: str) -> tuple[str | None, bool]:
    from app.stores.sql.repositories import CollectionRepository, DocumentRepository

    with container.sessions() as session:
        found = CollectionRepository(session).get(collection)
        rows, _ = DocumentRepository(session).page(collection=collection, limit=1, cursor=None, reader=None)
        return (found.description if found else None), bool(rows)


def _describe(container: Container, collection: str, description: str) -> None:
    from app.stores.sql.repositories import CollectionRepository

    with container.sessions.begin() as session:
        CollectionRepository(session).ensure(collection).description = description


# --- queries -------------------------------------------------------------------------------------------
def evaluate(
    container: Container,
    dataset: BeirDataset,
    collection: str,
    modes: Sequence[ModeSpec],
    queries: Sequence[tuple[str, str]],
    progress: Progress | None = None,
) -> list[ModeResult]:
    search: SearchService = container.search
    canonical = canonical_ids(dataset)
    flt = ChunkFilter(collection=collection)
    embeds = any(m.mode != "keyword" for m in modes)
    latencies: list[list[float]] = [[] for _ in modes]
    rows: list[dict[str, dict[str, float]]] = [{} for _ in modes]
    if queries:  # warm up (the first vector search loads the index) outside the measurements
        vector = container.embedder.embed_query(queries[0][1]) if embeds else None
        for spec in modes:
            search.search(
                queries[0][1], flt, DEPTH, spec.mode, fusion=spec.fusion, rerank=spec.rerank, query_vector=vector
            )
    for n, (qid, text) in enumerate(queries, start=1):
        relevant: dict[str, int] = {}
        for doc_id, grade in dataset.qrels[qid].items():
            key = canonical.get(doc_id, doc_id)
            relevant[key] = max(grade, relevant.get(key, 0))
        vector, embed_ms = None, 0.0
        if embeds:
            t = time.perf_counter()
            vector = container.embedder.embed_query(text)
            embed_ms = (time.perf_counter() - t) * 1000
        for i, spec in enumerate(modes):
            vec = vector if spec.mode != "keyword" else None
            t = time.perf_counter()
            top = search.search(text, flt, TOP_K, spec.mode, fusion=spec.fusion, rerank=spec.rerank, query_vector=vec)
            latencies[i].append((time.perf_counter() - t) * 1000 + (embed_ms if vec is not None else 0.0))
            deep = search.search(text, flt, DEPTH, spec.mode, fusion=spec.fusion, rerank=spec.rerank, query_vector=vec)
            rows[i][qid] = query_metrics(_ranked(top, canonical), relevant, _ranked(deep, canonical))
        if progress is not None:
            progress("queries", n, len(queries))
    return [
        ModeResult(
            spec=spec,
            metrics={name: mean(r[name] for r in rows[i].values()) for name in METRICS},
            p50_ms=percentile(latencies[i], 50),
            p95_ms=percentile(latencies[i], 95),
            per_query=rows[i],
        )
        for i, spec in enumerate(modes)
    ]


def canonical_ids(dataset: BeirDataset) -> dict[str, str]:
    """Corpus id -> the id of the first document with the same uploaded content (identical uploads are stored
    once, under the first one's id)."""
    first: dict[str, str] = {}
    return {doc.id: first.setdefault(hashlib.sha256(document_bytes(doc)).hexdigest(), doc.id) for doc in dataset.corpus}


def _ranked(outcome: SearchOutcome, canonical: dict[str, str]) -> list[str]:
    """Corpus ids of the hits, best first, each once (chunks without a beir_id are left out)."""
    ids = (h.chunk.metadata.get("beir_id") for h in outcome.hits)
    return unique_in_order(None if i is None else canonical.get(str(i), str(i)) for i in ids)


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
