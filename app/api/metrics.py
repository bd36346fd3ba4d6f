"""/metrics for Prometheus, and chat timing (latency, time to first token, tokens) from the chat route.

The services report searches, ingest jobs and model calls to the metrics through ``app.core.events``; chat is
timed here because its latency as the client sees it (streams included) is an HTTP matter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.core.observability import Metrics

if TYPE_CHECKING:
    from app.chat.service import ChatEvent
    from app.providers.base import Usage

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    app.include_router(router)


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
