"""Rebuild the chunk index with the configured embedder, from the chunks already stored.

The original files are not kept, but every chunk's text, metadata, source position and ACL are in the chunk
store, so a re-index reads them back document by document, re-embeds the text, re-analyzes the keyword tokens
and writes everything to a new index:

- OpenSearch: a new concrete index beside the one behind the alias; the alias moves to it in one
  ``_aliases`` call, then the old index is deleted (unless ``keep_old``). Searches keep working throughout.
  Documents added or deleted while it copies are caught up before the move; uploads, deletes and edits should
  still be paused, and the service restarted with the new model right after (until then, instances running
  the old model send the old model's query vectors to the new index).
- Embedded: ``chunks.db.reindex`` next to ``chunks.db``, moved over it with ``os.replace``. The service must be
  stopped: a process holding the old file open would keep writing to it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.config import Settings
from app.core.errors import ConfigurationError
from app.providers.base import Embedder
from app.stores.vector.base import ChunkRecord, ChunkStore, IndexInfo
from app.text.analysis import Analyzer
from app.text.context import index_text

if TYPE_CHECKING:  # opensearch-py is an extra: the embedded default must not need it
    from app.stores.vector.opensearch import OpenSearchChunkStore

# (documents done, documents to do, chunks done)
Progress = Callable[[int, int, int], None]
_ADD_BATCH = 256


@dataclass(slots=True)
class ReindexReport:
    backend: str
    old: IndexInfo | None  # None: there was no index to rebuild
    new: IndexInfo
    source: str  # the old index / file
    target: str  # the new index / file
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    kept_old: str | None = None  # where the old index still is (keep_old)


def reindex(
    settings: Settings,
    embedder: Embedder,
    analyzer: Analyzer,
    *,
    keep_old: bool = False,
    progress: Progress | None = None,
) -> ReindexReport:
    """Rebuild the store chosen by settings with ``embedder``; afterwards it accepts ``embedder``'s model."""
    new = IndexInfo(embedding_model=embedder.model_id, dimension=embedder.dimension)
    copier = _Copier(embedder, analyzer, settings.embed_batch_size, progress)
    if settings.vector_store == "embedded":
        return _reindex_embedded(settings.data_dir / "chunks.db", new, copier, keep_old=keep_old)
    if settings.vector_store == "opensearch":
        from app.stores.vector.opensearch import OpenSearchChunkStore

        return _reindex_opensearch(OpenSearchChunkStore.from_settings(settings), new, copier, keep_old=keep_old)
    raise ConfigurationError(f"unknown KS_VECTOR_STORE {settings.vector_store!r}")


class _Copier:
    """Copies documents from one store to another, re-embedding and re-analyzing every chunk."""

    def __init__(self, embedder: Embedder, analyzer: Analyzer, embed_batch: int, progress: Progress | None) -> None:
        self._embedder = embedder
        self._analyzer = analyzer
        self._embed_batch = embed_batch
        self._progress = progress
        self.documents = 0
        self.chunks = 0

    def copy(self, source: ChunkStore, target: ChunkStore, document_ids: Iterable[str], total: int) -> None:
        pending: list[ChunkRecord] = []
        for document_id in document_ids:
            pending.extend(source.get_chunks(document_id))
            if len(pending) >= _ADD_BATCH:
                self._write(target, pending)
                pending = []
            self.documents += 1
            if self._progress is not None:
                self._progress(self.documents, total, self.chunks + len(pending))
        self._write(target, pending)

    def _write(self, target: ChunkStore, chunks: list[ChunkRecord]) -> None:
        if not chunks:
            return
        for start in range(0, len(chunks), self._embed_batch):
            batch = chunks[start : start + self._embed_batch]
            # get_chunks does not return the tokens; they are made again from the text, title and headings,
            # exactly as at ingest.
            indexed = [index_text(self._analyzer, c.title, c.source.heading_path, c.text) for c in batch]
            vectors = self._embedder.embed_documents([x.embed for x in indexed])
            for c, x, v in zip(batch, indexed, vectors, strict=True):
                c.vector, c.tokens, c.context = v, x.tokens, x.context
        target.add(chunks)
        self.chunks += len(chunks)


def _reindex_embedded(path: Path, new: IndexInfo, copier: _Copier, *, keep_old: bool) -> ReindexReport:
    from app.stores.vector.embedded import EmbeddedChunkStore

    target_path = path.with_name(path.name + ".reindex")
    report = ReindexReport("embedded", None, new, str(path), str(target_path))
    if not path.exists():
        return report
    started = time.perf_counter()
    _remove(target_path)  # an interrupted run's partial copy
    source = EmbeddedChunkStore(path)
    report.old = source.index_info()
    if report.old is None:
        source.close()
        return report
    target = EmbeddedChunkStore(target_path)
    try:
        target.ensure_ready(new)
        ids = sorted(source.document_ids())
        copier.copy(source, target, ids, len(ids))
        expected, written = source.count(), target.count()
    except BaseException:
        target.close()
        source.close()
        _remove(target_path)
        raise
    target.close()
    source.close()
    # SQLite removes the -wal file when the last connection closes: if it is still there, another process (the
    # service) has the old file open and would keep using it after the move.
    if Path(f"{path}-wal").exists():
        _remove(target_path)
        raise ConfigurationError(
            f"another process has {path} open: stop the service, then run `knowledge-search reindex` again"
        )
    if written != expected:
        _remove(target_path)
        raise ConfigurationError(f"re-index copied {written} chunks of {expected}; {path} is left unchanged")
    if keep_old:
        backup = path.with_name(path.name + ".old")
        backup.unlink(missing_ok=True)
        try:
            os.link(path, backup)  # instant, and the old content stays whole after the replace
        except OSError:
            shutil.copy2(path, backup)
        report.kept_old = str(backup)
    os.replace(target_path, path)
    report.documents, report.chunks, report.seconds = copier.documents, copier.chunks, time.perf_counter() - started
    return report


def _remove(db: Path) -> None:
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        f.unlink(missing_ok=True)


def _reindex_opensearch(
    store: OpenSearchChunkStore, new: IndexInfo, copier: _Copier, *, keep_old: bool
) -> ReindexReport:
    started = time.perf_counter()
    try:
        old_indices = store.indices()
        report = ReindexReport("opensearch", store.index_info(), new, ",".join(old_indices), "")
        if not old_indices:
            return report  # nothing indexed yet: the service creates the index at start-up
        target = store.create_reindex_target(new)
        report.target = target.name
        try:
            ids = sorted(store.document_ids())
            copier.copy(store, target, ids, len(ids))
            # Catch up with documents added or deleted while copying (writes should be paused, but be safe).
            current = store.document_ids()
            added = sorted(current - set(ids))
            copier.copy(store, target, added, len(ids) + len(added))
            for gone in set(ids) - current:
                target.delete_document(gone)
            expected, written = store.count(), target.count()
            if written != expected:
                raise ConfigurationError(
                    f"re-index copied {written} chunks of {expected}; the alias still points at {report.source}"
                )
        except BaseException:
            target.drop()
            raise
        store.move_alias(target, delete_old=not keep_old)
        report.kept_old = report.source if keep_old else None
    finally:
        store.close()
    report.documents, report.chunks, report.seconds = copier.documents, copier.chunks, time.perf_counter() - started
    return report
