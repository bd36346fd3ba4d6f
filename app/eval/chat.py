"""Chat evaluation: ask every question of a question file through the ChatService and score the answers.

A question file is JSONL, one question a line:

- ``{"id": "q1", "question": "...", "doc_ids": ["corpus-id", ...], "must_contain": "phrase"}``: answerable;
  right when the answer cites one of ``doc_ids`` (corpus ``_id``\\s). ``must_contain`` (a string or a list of
  strings, optional) must appear in the answer (case, width and spacing ignored).
- ``{"id": "q2", "question": "...", "answerable": false}``: the documents do not answer it; right when the
  answer is "not covered" (``grounded: false``).

Per question: the documents cited, whether one of them is expected, whether the phrase is there, whether the
covered / not-covered call is right, and the latency of ``ChatService.ask`` (retrieval, answer, and the
conversation rows it writes). The aggregates are defined in ``aggregate``.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.eval.dataset import DatasetError
from app.eval.metrics import percentile
from app.stores.vector.base import ChunkFilter

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ChatQuestion:
    id: str
    question: str
    doc_ids: tuple[str, ...] = ()
    must_contain: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.doc_ids)


@dataclass(slots=True)
class ChatOutcome:
    id: str
    question: str
    answerable: bool
    expected: list[str]
    answer: str
    grounded: bool
    cited: list[str]
    cited_expected: bool | None  # None for an unanswerable question
    contains: bool | None  # None when the question names no phrase
    correct_call: bool  # covered vs not covered
    ms: float


@dataclass(slots=True)
class ChatResult:
    name: str
    path: str
    metrics: dict[str, float | None]
    counts: dict[str, int]
    p50_ms: float
    p95_ms: float
    outcomes: list[ChatOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "metrics": {k: None if v is None else round(v, 4) for k, v in self.metrics.items()},
            "counts": self.counts,
            "latency_ms": {"p50": round(self.p50_ms, 1), "p95": round(self.p95_ms, 1)},
            "per_question": [asdict(o) for o in self.outcomes],
        }


CHAT_METRICS = (
    "citation_accuracy",
    "citation_precision",
    "not_covered_precision",
    "not_covered_recall",
    "not_covered_accuracy",
    "contain_rate",
)


def load_questions(path: Path) -> list[ChatQuestion]:
    """Read and check a question file; DatasetError names the line and what is wrong."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; a chat question file is JSONL with question, doc_ids")
    questions: list[ChatQuestion] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise DatasetError(f"{where}: each line must be a JSON object with a non-empty 'question'")
        qid = str(obj.get("id") or obj.get("_id") or f"line-{n}")
        if qid in seen:
            raise DatasetError(f"{where}: id {qid!r} appears twice")
        seen.add(qid)
        doc_ids = obj.get("doc_ids") or []
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        answerable = obj.get("answerable", True)
        if answerable is False and doc_ids:
            raise DatasetError(f"{where}: a question with 'answerable': false cannot name doc_ids")
        if answerable is not False and not doc_ids:
            raise DatasetError(f"{where}: give the expected 'doc_ids', or 'answerable': false")
        phrases = obj.get("must_contain") or []
        if isinstance(phrases, str):
            phrases = [phrases]
        questions.append(ChatQuestion(qid, obj["question"], tuple(map(str, doc_ids)), tuple(map(str, phrases))))
    if not questions:
        raise DatasetError(f"{path}: no questions")
    return questions


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def score(question: ChatQuestion, answer: Any, cited: list[str], ms: float) -> ChatOutcome:
    """One answer (a ChatAnswer) against its question; ``cited`` are the corpus ids of its citations."""
    expected = set(question.doc_ids)
    return ChatOutcome(
        id=question.id,
        question=question.question,
        answerable=question.answerable,
        expected=list(question.doc_ids),
        answer=answer.answer,
        grounded=answer.grounded,
        cited=cited,
        cited_expected=(answer.grounded and bool(expected & set(cited))) if question.answerable else None,
        contains=all(_norm(p) in _norm(answer.answer) for p in question.must_contain)
        if question.must_contain
        else None,
        correct_call=answer.grounded == question.answerable,
        ms=ms,
    )


def aggregate(outcomes: Sequence[ChatOutcome]) -> tuple[dict[str, float | None], dict[str, int]]:
    """citation_accuracy: answerable questions answered with a citation of an expected document.
    citation_precision: of all citations given to answerable questions, the share that are expected documents.
    not_covered_precision / recall: "not covered" answers that were right / unanswerable questions so answered.
    not_covered_accuracy: questions whose covered / not-covered call is right (answerable ones answered,
    unanswerable ones declined). contain_rate: answers holding their ``must_contain`` phrase(s).
    A figure with nothing to count is None."""
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    declined = [o for o in outcomes if not o.grounded]
    citations = [c for o in answerable for c in o.cited]
    expected_citations = sum(1 for o in answerable for c in o.cited if c in o.expected)
    with_phrase = [o for o in outcomes if o.contains is not None]

    def share(hits: int, total: int) -> float | None:
        return hits / total if total else None

    metrics = {
        "citation_accuracy": share(sum(1 for o in answerable if o.cited_expected), len(answerable)),
        "citation_precision": share(expected_citations, len(citations)),
        "not_covered_precision": share(sum(1 for o in declined if not o.answerable), len(declined)),
        "not_covered_recall": share(sum(1 for o in unanswerable if not o.grounded), len(unanswerable)),
        "not_covered_accuracy": share(sum(1 for o in outcomes if o.correct_call), len(outcomes)),
        "contain_rate": share(sum(1 for o in with_phrase if o.contains), len(with_phrase)),
    }
    counts = {
        "questions": len(outcomes),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "declined": len(declined),
        "with_phrase": len(with_phrase),
    }
    return metrics, counts


def evaluate_chat(
    container: Any,
    collection: str,
    path: Path,
    questions: Sequence[ChatQuestion],
    progress: Progress | None = None,
) -> ChatResult:
    """Ask each question once, in a fresh conversation, through the container's ChatService."""
    flt = ChunkFilter(collection=collection)
    beir_ids = _beir_ids(container, collection)
    outcomes: list[ChatOutcome] = []
    if questions:  # warm up (the first search loads the vector index) outside the measurements
        container.chat.ask(questions[0].question, flt)
    for n, question in enumerate(questions, start=1):
        started = time.perf_counter()
        answer = container.chat.ask(question.question, flt)
        ms = (time.perf_counter() - started) * 1000
        cited = list(dict.fromkeys(beir_ids.get(c.document_id, c.document_id) for c in answer.citations))
        outcomes.append(score(question, answer, cited, ms))
        if progress is not None:
            progress(f"chat {path.name}", n, len(questions))
    metrics, counts = aggregate(outcomes)
    latencies = [o.ms for o in outcomes]
    return ChatResult(
        name=path.stem,
        path=str(path),
        metrics=metrics,
        counts=counts,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        outcomes=outcomes,
    )


def _beir_ids(container: Any, collection: str) -> dict[str, str]:
    """Document id -> the corpus id it was ingested from (its ``beir_id`` metadata)."""
    from app.stores.sql.repositories import DocumentRepository

    out: dict[str, str] = {}
    cursor = None
    with container.sessions() as session:
        repo = DocumentRepository(session)
        while True:
            rows, cursor = repo.page(collection=collection, limit=500, cursor=cursor, reader=None)
            for row in rows:
                beir_id = (row.metadata_ or {}).get("beir_id")
                if beir_id is not None:
                    out[row.id] = str(beir_id)
            if not cursor:
                return out
