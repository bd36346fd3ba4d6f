"""A folder tree as a source: one document per file, found again by its path, so a run can be repeated at will.

Unchanged files are skipped; new files, changed files (their content swapped in place) and files an interrupted
run left unfinished are indexed on several threads, so one file is parsed while another is embedded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import AppError
from app.ingest.payload import Payload
from app.ingest.service import IngestService, Upload
from app.ingest.sources.sync import SUPPORTED_SUFFIXES
from app.stores.sql.models import Document
from app.stores.sql.repositories import DocumentRepository

ChunkProgress = Callable[[int, int], None]
_Task = Callable[[ChunkProgress], Document]


@dataclass(slots=True)
class FolderReport:
    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self, collection: str) -> str:
        return f"indexed {self.indexed}, unchanged {self.unchanged}, failed {self.failed} (collection '{collection}')"


class FolderProgress:
    """What a run reports as it goes (the CLI draws bars from it); every method may be called from any thread."""

    def checking(self, total: int) -> None: ...
    def checked(self, path: Path) -> None: ...
    def indexing(self, total: int) -> None: ...
    def chunks(self, done: int, total: int) -> None: ...
    def finished(self, path: Path, error: str | None) -> None: ...


def find_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, and files of a supported type anywhere under the folders named."""
    return sorted(
        {
            p
            for root in paths
            for p in ([root] if root.is_file() else root.rglob("*"))
            if p.is_file() and (root.is_file() or p.suffix.lower() in SUPPORTED_SUFFIXES)
        }
    )


class FolderIngest:
    def __init__(self, ingest: IngestService, sessions: sessionmaker[Session], *, workers: int = 2) -> None:
        self._ingest, self._sessions, self._workers = ingest, sessions, workers

    def run(
        self, files: list[Path], collection: str, metadata: dict[str, Any], progress: FolderProgress | None = None
    ) -> FolderReport:
        progress = progress or FolderProgress()
        report, tasks = FolderReport(), {}
        progress.checking(len(files))
        for path in files:  # hashing is sequential: it reads the disk, which threads would not speed up
            try:
                task = self._task(path, collection, metadata)
            except AppError as exc:
                self._fail(report, path, exc.detail, progress)
            else:
                if task is None:
                    report.unchanged += 1
                else:
                    tasks[path] = task
            progress.checked(path)
        progress.indexing(len(tasks))
        counts: dict[Path, tuple[int, int]] = {}

        def chunk_progress(path: Path) -> ChunkProgress:
            def report_chunks(done: int, total: int) -> None:
                counts[path] = (done, total)
                values = list(counts.values())
                progress.chunks(sum(d for d, _ in values), sum(t for _, t in values))

            return report_chunks

        with ThreadPoolExecutor(self._workers, thread_name_prefix="folder-ingest") as pool:
            running = {pool.submit(task, chunk_progress(path)): path for path, task in tasks.items()}
            for future in as_completed(running):
                path = running[future]
                try:
                    doc = future.result()
                except AppError as exc:
                    self._fail(report, path, exc.detail, progress)
                    continue
                if doc.status == "indexed":
                    report.indexed += 1
                    progress.finished(path, None)
                else:  # failed, or queued again after a transient error (the next run picks it up)
                    self._fail(report, path, doc.error or doc.status, progress)
        return report

    @staticmethod
    def _fail(report: FolderReport, path: Path, reason: str, progress: FolderProgress) -> None:
        report.failed += 1
        report.errors.append(f"{path}: {reason}")
        progress.finished(path, reason)

    def _task(self, path: Path, collection: str, metadata: dict[str, Any]) -> _Task | None:
        """What indexing this file takes; None when it is indexed already, unchanged. A file is found again by
        its absolute path (``external_id`` ``file://...``) or, for paths over 256 characters, by its content."""
        uri = path.resolve().as_uri()
        external_id = uri if len(uri) <= 256 else None
        payload = Payload.of_file(path)
        upload = Upload(payload, collection=collection, filename=path.name, metadata=metadata, external_id=external_id)
        known = None
        if external_id:
            with self._sessions() as session:
                doc = DocumentRepository(session).by_external_id(collection, external_id)
                known = (doc.id, doc.status, doc.content_hash) if doc else None
        if known is not None:
            doc_id, status, content_hash = known
            if status == "indexed":
                if content_hash == payload.sha256:
                    return None
                return lambda _progress: self._ingest.replace(doc_id, upload)  # changed: swapped in place
            if status == "failed":  # an earlier version failed: start again
                self._ingest.delete(doc_id)
        submitted = self._ingest.submit(upload)
        unfinished = submitted.document.status in ("queued", "processing")  # left by an interrupted run
        if not (submitted.created or unfinished) or submitted.job is None:
            return None
        job_id = submitted.job.id
        return lambda chunk_progress: self._ingest.run_job(job_id, chunk_progress)
