"""The BEIR dataset layout: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` in one folder.

- corpus.jsonl: one JSON object per line, ``{"_id": ..., "title": ..., "text": ...}`` (title may be empty;
  an optional ``"format"``, ``text`` (default), ``markdown`` or ``html``, says how the text is uploaded, so
  its headings count as headings)
- queries.jsonl: ``{"_id": ..., "text": ...}``
- qrels/test.tsv: tab-separated, header ``query-id corpus-id score``; a score above 0 marks a relevant
  document (higher is more relevant)

A chat-only evaluation needs the corpus alone (``retrieval=False``).

Only queries with at least one relevant document are evaluated, as BEIR does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYOUT = "a BEIR dataset folder holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv"
QRELS_HEADER = ("query-id", "corpus-id", "score")
FORMATS = ("text", "markdown", "html")


class DatasetError(Exception):
    """A dataset that cannot be read; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    id: str
    title: str
    text: str
    format: str = "text"


@dataclass(slots=True)
class BeirDataset:
    name: str
    root: Path
    split: str
    corpus: list[CorpusDoc]
    queries: dict[str, str]
    # query id -> corpus id -> graded relevance (> 0)
    qrels: dict[str, dict[str, int]]
    # sha256 of corpus.jsonl: tells whether an ingested collection holds this very corpus
    fingerprint: str
    warnings: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> list[tuple[str, str]]:
        """(query id, text) of every query that has a relevant document, in queries.jsonl order."""
        return [(qid, text) for qid, text in self.queries.items() if self.qrels.get(qid)]


def load_beir(root: Path, split: str = "test", *, retrieval: bool = True) -> BeirDataset:
    """Read and check a BEIR folder; DatasetError says which file is missing or wrong. Without
    ``retrieval`` only corpus.jsonl is needed (queries and qrels are read when present)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder; {LAYOUT.format(split=split)}")
    corpus_path, queries_path = root / "corpus.jsonl", root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path) if retrieval else (corpus_path,):
        if not path.is_file():
            raise DatasetError(f"{path}: file not found; {LAYOUT.format(split=split)}")

    corpus: list[CorpusDoc] = []
    seen: set[str] = set()
    empty = 0
    for where, obj in _json_lines(corpus_path):
        doc_id = _field(obj, "_id", where)
        text = _field(obj, "text", where, allow_empty=True)
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise DatasetError(f"{where}: 'title' must be a string")
        fmt = obj.get("format") or "text"
        if fmt not in FORMATS:
            raise DatasetError(f"{where}: 'format' must be one of {', '.join(FORMATS)}")
        if doc_id in seen:
            raise DatasetError(f"{where}: _id {doc_id!r} appears twice in the corpus")
        seen.add(doc_id)
        if (title + text).strip():
            corpus.append(CorpusDoc(doc_id, title.strip(), text, fmt))
        else:
            empty += 1
    if not corpus:
        raise DatasetError(f"{corpus_path}: the corpus has no documents with text")

    queries: dict[str, str] = {}
    for where, obj in _json_lines(queries_path) if queries_path.is_file() else ():
        qid, text = _field(obj, "_id", where), _field(obj, "text", where)
        if qid in queries:
            raise DatasetError(f"{where}: _id {qid!r} appears twice in the queries")
        queries[qid] = text

    qrels = _read_qrels(qrels_path) if qrels_path.is_file() else {}
    warnings = [f"{empty} corpus documents have no text (not ingested)"] if empty else []
    unknown_queries = sorted(set(qrels) - set(queries))
    if unknown_queries:
        warnings.append(f"{len(unknown_queries)} query ids of {qrels_path.name} are not in queries.jsonl (skipped)")
    unknown_docs = {d for rel in qrels.values() for d in rel} - seen
    if unknown_docs:
        warnings.append(f"{len(unknown_docs)} relevant corpus ids are not in corpus.jsonl (they count as missed)")
    dataset = BeirDataset(
        name=root.resolve().name,
        root=root,
        split=split,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        fingerprint=_sha256(corpus_path),
        warnings=warnings,
    )
    if retrieval and not dataset.evaluated:
        raise DatasetError(f"{qrels_path}: no query of queries.jsonl has a relevant document (score > 0) here")
    return dataset


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
            if not isinstance(obj, dict):
                raise DatasetError(f"{where}: each line must be one JSON object")
            yield where, obj


def _field(obj: dict[str, Any], name: str, where: str, *, allow_empty: bool = False) -> str:
    value = obj.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise DatasetError(f"{where}: {name!r} is missing or not a non-empty string")
    return value


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        header = f.readline().split()
        if tuple(header) != QRELS_HEADER:
            raise DatasetError(f"{path}:1: the first line must be the header 'query-id<TAB>corpus-id<TAB>score'")
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if len(parts) != 3:
                raise DatasetError(f"{path}:{n}: expected 3 tab-separated columns: query-id, corpus-id, score")
            qid, doc_id, raw = (p.strip() for p in parts)
            try:
                score = int(float(raw))
            except ValueError as exc:
                raise DatasetError(f"{path}:{n}: score {raw!r} is not a number") from exc
            if score > 0:
                qrels.setdefault(qid, {})[doc_id] = score
    return qrels


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
