"""In-process workers that run queued ingest jobs (uploads with wait=false)."""

from __future__ import annotations

import logging
import threading

from app.ingest.service import IngestService

log = logging.getLogger(__name__)


class JobWorker:
    def __init__(self, ingest: IngestService, threads: int = 1, poll_seconds: float = 1.0) -> None:
        self._jobs = ingest.jobs
        self._threads = [
            threading.Thread(target=self._loop, name=f"ingest-worker-{i}", daemon=True) for i in range(threads)
        ]
        self._poll = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            if t.ident is not None:  # never started: the service stopped before the database was migrated
                t.join(timeout)

    def run_pending(self) -> int:
        """Run queued jobs until none is left (used by the CLI and tests); returns how many ran."""
        ran = 0
        while self._run_one():
            ran += 1
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._run_one():
                    continue
            except Exception:  # keep the worker alive; the job itself records its failure
                log.exception("ingest worker error")
            self._wake.wait(self._poll)
            self._wake.clear()

    def _run_one(self) -> bool:
        claimed = self._jobs.claim_next()
        if claimed is None:
            return False
        job_id, holder = claimed
        try:
            self._jobs.run(job_id, holder)
        except Exception:
            log.exception("job %s failed", job_id)
        return True
