"""Deterministic corpora from text already on this machine: Python standard-library docstrings, and
synthetic vectors over their chunks for the large-scale benchmarks.

Each module becomes one Markdown document: a heading per class/function followed by its docstring.
"""

from __future__ import annotations

import ast
import sysconfig
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def docstring_documents(min_chars: int = 400, *, include_site_packages: bool = False) -> Iterator[tuple[str, str]]:
    """(name, markdown) per module of the standard library (and, optionally, the installed packages), sorted by
    path so runs are identical."""
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    if include_site_packages:
        roots.append(Path(sysconfig.get_paths()["purelib"]))
    for root in roots:
        yield from _documents(root, min_chars, skip_site_packages=root == roots[0])


def _documents(root: Path, min_chars: int, *, skip_site_packages: bool) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        skip = {"test", "tests", "idlelib", "lib2to3", "turtledemo"} | (
            {"site-packages"} if skip_site_packages else set()
        )
        if any(part in skip for part in rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        parts = []
        module_doc = ast.get_docstring(tree)
        name = ".".join(rel.with_suffix("").parts)
        parts.append(f"# {name}\n\n{module_doc or ''}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    parts.append(f"## {node.name}\n\n{doc}")
        text = "\n\n".join(parts)
        if len(text) >= min_chars:
            yield name, text


# --- synthetic vectors over the same texts (bench.opensearch_overhead, bench.scale) ---
DIM = 384
BUCKETS = 1 << 15
MODEL_ID = f"bench-synthetic-hash-{DIM}"


class HashedVectors:
    """Deterministic synthetic vectors: one fixed random vector per hashed token, summed and normalized."""

    def __init__(self, seed: int = 0) -> None:
        self._table = np.random.default_rng(seed).standard_normal((BUCKETS, DIM), dtype=np.float32)

    def of_tokens(self, tokens: Sequence[str], noise_key: str | None = None) -> np.ndarray:
        return self.with_noise(self.base(tokens), noise_key)

    def base(self, tokens: Sequence[str]) -> np.ndarray:
        """The tokens' sum, not normalized: copies of a chunk share it and differ only in their noise."""
        rows = sorted({zlib.crc32(t.encode()) % BUCKETS for t in tokens})
        return self._table[rows].sum(axis=0) if rows else np.ones(DIM, dtype=np.float32)

    @staticmethod
    def with_noise(base: np.ndarray, noise_key: str | None) -> np.ndarray:
        v = base / np.linalg.norm(base)
        if noise_key is not None:
            noise = np.random.default_rng(zlib.crc32(noise_key.encode())).standard_normal(DIM, dtype=np.float32)
            v = v + 0.25 * noise / np.linalg.norm(noise)
            v /= np.linalg.norm(v)
        return v.astype(np.float32)


def chunk_record(doc_id: str, title: str, ordinal: int, draft: Any, tokens: str, vector: np.ndarray) -> Any:
    """The ChunkRecord of one chunk of ``corpus_chunks`` (its id is ``<document id>-<ordinal>``)."""
    from app.stores.vector.base import ChunkRecord

    return ChunkRecord(
        chunk_id=f"{doc_id}-{ordinal:05d}",
        document_id=doc_id,
        collection="bench",
        ordinal=ordinal,
        title=title,
        text=draft.text,
        source=draft.source,
        metadata={"corpus": "docstrings", "copy": int(doc_id.rsplit("~", 1)[1])},
        tokens=tokens,
        vector=vector,
    )


def read_corpus(attempts: int = 3) -> list[tuple[str, str]]:
    """The docstring corpus, read in one go (a package installed meanwhile can make a file vanish mid-walk)."""
    for attempt in range(attempts):
        try:
            return list(docstring_documents(include_site_packages=True))
        except OSError as exc:
            print(f"  corpus changed while reading it ({exc}); again", flush=True)
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def corpus_chunks(corpus: list[tuple[str, str]], target: int) -> Iterator[tuple[str, str, int, Any]]:
    """(document id, title, ordinal, draft) until ``target`` chunks, cycling the corpus with a copy number."""
    from app.ingest.chunking import chunk_document
    from app.ingest.parsers import parse

    docs: list[tuple[str, list[Any]]] = []
    produced = 0
    for name, text in corpus:
        drafts = chunk_document(parse(text.encode(), "text/markdown"), 600, 100)
        docs.append((name, drafts))
        for i, d in enumerate(drafts):
            yield f"{name}~0", name, i, d
            produced += 1
            if produced >= target:
                return
    copy = 1
    while True:
        for name, drafts in docs:
            for i, d in enumerate(drafts):
                yield f"{name}~{copy}", name, i, d
                produced += 1
                if produced >= target:
                    return
        copy += 1
