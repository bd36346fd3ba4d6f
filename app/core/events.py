"""What the services report as they work (searches, ingest jobs, model calls), to whoever listens.

Services receive an ``Observers`` at construction and call it; they never know who listens. The app attaches
its Prometheus metrics when it starts (and detaches them when it stops), so a service is never wrapped or
replaced to be measured, and the CLI, which attaches nothing, pays nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Observer(Protocol):
    def search_finished(self, mode: str, took_ms: float, timings_ms: dict[str, float]) -> None: ...

    def ingest_job_finished(self, status: str, seconds: float, chunks: int) -> None:
        """``status``: succeeded, failed, or retried (a transient failure queued it again)."""

    def model_called(self, kind: str, texts: int, seconds: float) -> None:
        """An embedding call: ``kind`` is documents (ingest) or query (search, chat); ``texts`` in the call."""

    def query_cache_used(self, hit: bool) -> None:
        """A query's embedding was looked up in the query-embedding cache."""


class Observers:
    """A fan-out to the attached observers. A listener that raises is logged, never the caller's problem."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[Observer, ...] = ()

    def attach(self, observer: Observer) -> None:
        with self._lock:
            self._listeners = (*self._listeners, observer)

    def detach(self, observer: Observer) -> None:
        with self._lock:
            self._listeners = tuple(o for o in self._listeners if o is not observer)

    def search_finished(self, mode: str, took_ms: float, timings_ms: dict[str, float]) -> None:
        for o in self._listeners:
            self._call(o.search_finished, mode, took_ms, timings_ms)

    def ingest_job_finished(self, status: str, seconds: float, chunks: int) -> None:
        for o in self._listeners:
            self._call(o.ingest_job_finished, status, seconds, chunks)

    def model_called(self, kind: str, texts: int, seconds: float) -> None:
        for o in self._listeners:
            self._call(o.model_called, kind, texts, seconds)

    def query_cache_used(self, hit: bool) -> None:
        for o in self._listeners:
            self._call(o.query_cache_used, hit)

    @staticmethod
    def _call(method: Callable[..., None], *args: object) -> None:
        try:
            method(*args)
        except Exception:  # metrics must never fail a search or an ingest
            log.exception("an observer failed")
