"""/metrics for Prometheus, the web page at /, and the hooks that feed the service metrics.

The hooks wrap the search and ingest services on the container (the services stay unaware of metrics);
chat is timed by its route through ``chat_timer``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from app.core.observability import Metrics

if TYPE_CHECKING:
    from app.chat.service import ChatEvent
    from app.core.container import Container
    from app.providers.base import Usage

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The page talks to this same service only; no inline script or style, so injected markup cannot run.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/")
def page() -> FileResponse:
    """The web page: search, ask and upload through the public API."""
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


# --- hooks around the services (the services themselves stay unaware of metrics) ---------------------
class _Hooked:
    """Stands in for a service: one method is timed, every other attribute is the service's own."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "_metrics", metrics)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)


class _InstrumentedSearch(_Hooked):
    def search(self, *args: Any, **kwargs: Any) -> Any:
        outcome = self.inner.search(*args, **kwargs)
        mode = kwargs.get("mode", args[3] if len(args) > 3 else "hybrid")
        self._metrics.observe_search(mode, outcome.took_ms, outcome.timings_ms)
        return outcome


class _InstrumentedIngest(_Hooked):
    def run_job(self, *args: Any, **kwargs: Any) -> Any:
        started, status = time.perf_counter(), "failed"
        try:
            doc = self.inner.run_job(*args, **kwargs)
            # a transient failure puts the job back in the queue (document "queued") for a later attempt
            status = {"indexed": "succeeded", "queued": "retried"}.get(doc.status, "failed")
            if status == "succeeded":
                self._metrics.chunks_indexed.inc(doc.chunk_count or 0)
            return doc
        finally:
            self._metrics.ingest_jobs.labels(status).inc()
            self._metrics.ingest_seconds.labels(status).observe(time.perf_counter() - started)


def instrument_container(container: Container, metrics: Metrics) -> None:
    """Count /v1/search and ingest jobs (API uploads and the in-process workers, which take ``container.ingest``
    when they start). Idempotent: a container reused by another app is re-pointed at that app's metrics."""
    container.search = _InstrumentedSearch(getattr(container.search, "inner", container.search), metrics)  # type: ignore[assignment]
    container.ingest = _InstrumentedIngest(getattr(container.ingest, "inner", container.ingest), metrics)  # type: ignore[assignment]
    metrics.watch_jobs(container.sessions)
    if hasattr(container.embedder, "listener"):  # an ObservedEmbedder (build_container makes one)
        container.embedder.listener = metrics.observe_embedding


class ChatTimer:
    """Chat latency, time to first token and token usage, from the API layer."""

    def __init__(self, metrics: Metrics | None, provider: str, stream: bool) -> None:
        self._metrics, self._provider, self._stream = metrics, provider, stream
        self._started = time.perf_counter()

    def watch(self, events: Iterator[ChatEvent]) -> Iterator[ChatEvent]:
        first = True
        for event in events:
            if event.kind == "delta" and first and self._metrics is not None:
                first = False
                self._metrics.chat_ttft_seconds.labels(self._provider).observe(time.perf_counter() - self._started)
            if event.kind == "done":
                usage = event.data.get("usage") or {}
                self._finish(event.data.get("model") or "", usage.get("input_tokens", 0), usage.get("output_tokens", 0))
            yield event

    def finished(self, model: str, usage: Usage) -> None:
        self._finish(model, usage.input_tokens, usage.output_tokens)

    def _finish(self, model: str, tokens_in: int, tokens_out: int) -> None:
        if self._metrics is None:
            return
        self._metrics.chat_seconds.labels(self._provider, str(self._stream).lower()).observe(
            time.perf_counter() - self._started
        )
        self._metrics.model_tokens.labels(self._provider, model, "in").inc(tokens_in)
        self._metrics.model_tokens.labels(self._provider, model, "out").inc(tokens_out)


def chat_timer(request: Request, provider: str, *, stream: bool) -> ChatTimer:
    return ChatTimer(getattr(request.app.state, "metrics", None), provider, stream)
