"""A folder tree as a source: one document per file, found again by its path, so a run can be repeated at will.

Unchanged files are skipped; new files, changed files (their content swapped in place) and files an interrupted
run left unfinished are indexed on several threads, so one file is parsed while another is embedded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.access.caller import SYSTEM
from app.core.errors import AppError
from app.ingest.parsers import SUPPORTED_SUFFIXES
from app.ingest.payload import Payload
from app.ingest.service import IngestService
from app.ingest.upload import Outcome, Upload, Upserted
from app.stores.sql.models import ORIGIN_FOLDER

ChunkProgress = Callable[[int, int], None]


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
    """Each file goes through the ingest service's one way in (``upsert``) as the service itself, with the
    folder origin: unchanged files come back unchanged, changed ones are replaced in place, and a file a killed
    run left queued is indexed now."""

    def __init__(self, ingest: IngestService, *, workers: int = 2) -> None:
        self._ingest, self._workers = ingest, workers

    def run(
        self, files: list[Path], collection: str, metadata: dict[str, Any], progress: FolderProgress | None = None
    ) -> FolderReport:
        progress = progress or FolderProgress()
        report = FolderReport()
        progress.checking(len(files))
        progress.indexing(len(files))
        counts: dict[Path, tuple[int, int]] = {}
        lock = threading.Lock()

        def chunk_progress(path: Path) -> ChunkProgress:
            def report_chunks(done: int, total: int) -> None:
                with lock:
                    counts[path] = (done, total)
                    values = list(counts.values())
                progress.chunks(sum(d for d, _ in values), sum(t for _, t in values))

            return report_chunks

        def one(path: Path) -> Upserted:
            try:
                upload = self._upload(path, collection, metadata)
            finally:
                progress.checked(path)
            return self._ingest.upsert(upload, SYSTEM, origin=ORIGIN_FOLDER, progress=chunk_progress(path))

        with ThreadPoolExecutor(self._workers, thread_name_prefix="folder-ingest") as pool:
            running = {pool.submit(one, path): path for path in files}
            for future in as_completed(running):
                path = running[future]
                try:
                    result = future.result()
                except AppError as exc:
                    self._fail(report, path, exc.detail, progress)
                    continue
                except OSError as exc:  # unreadable, or gone since it was listed
                    self._fail(report, path, f"cannot read the file: {exc.strerror or exc}", progress)
                    continue
                if result.outcome == Outcome.UNCHANGED:
                    report.unchanged += 1
                else:
                    report.indexed += 1
                progress.finished(path, None)
        return report

    @staticmethod
    def _fail(report: FolderReport, path: Path, reason: str, progress: FolderProgress) -> None:
        report.failed += 1
        report.errors.append(f"{path}: {reason}")
        progress.finished(path, reason)

    @staticmethod
    def _upload(path: Path, collection: str, metadata: dict[str, Any]) -> Upload:
        """A file is found again by its absolute path (``external_id`` ``file://...``) or, for paths over 256
        characters, by its content."""
        uri = path.resolve().as_uri()
        return Upload(
            Payload.of_file(path),
            collection=collection,
            filename=path.name,
            metadata=metadata,
            external_id=uri if len(uri) <= 256 else None,
        )
