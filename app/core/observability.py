"""Metrics, request ids, access logs, JSON logging, gateway middleware and optional tracing.

Metrics live in a ``CollectorRegistry`` owned by each app (``app.state.metrics``), not in the process-wide
default registry: tests build many apps in one process, and module-level metrics would collide ("Duplicated
timeseries") or leak counts from one app into the next. ``serve`` runs one app per process, so /metrics shows
exactly that process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from inspect import isawaitable
from typing import IO, TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.context import RequestContext, request_context
from app.core.errors import AppError, ConfigurationError, StoreUnavailable
from app.core.problems import problem_response
from app.core.states import JobStatus

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.core.config import Settings

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
access_log = logging.getLogger("app.http")
# Probes and scrapes would drown the access log at INFO.
_QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CHAT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
INGEST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def accept_request_id(value: str | None) -> str:
    """The caller's X-Request-ID when it is safe to log and echo, else a fresh one."""
    return value if value and _REQUEST_ID.fullmatch(value) else uuid.uuid4().hex


class Metrics:
    """Every metric the service exports, in one registry per app. No per-user or per-key labels."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series beside every counter and histogram (process-wide)
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        counter = functools.partial(Counter, registry=r)
        histogram = functools.partial(Histogram, registry=r)
        self.requests = counter("ks_http_requests", "HTTP requests.", ["method", "route", "status"])
        self.request_seconds = histogram(
            "ks_http_request_duration_seconds",
            "HTTP latency, to the last byte.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
        )
        self.ingest_jobs = counter("ks_ingest_jobs", "Ingest job runs: succeeded, failed, retried.", ["status"])
        self.ingest_seconds = histogram(
            "ks_ingest_job_duration_seconds", "Ingest job duration.", ["status"], buckets=INGEST_BUCKETS
        )
        self.chunks_indexed = counter("ks_chunks_indexed", "Chunks written to the chunk store.")
        self.embedding_seconds = counter(
            "ks_embedding_seconds",
            "Time the embedding model spent on calls: documents (ingest) or query (search, chat).",
            ["kind"],
        )
        self.embedded_texts = counter("ks_embedded_texts", "Texts embedded: documents or query.", ["kind"])
        self.embedding_batch = histogram(
            "ks_embedding_batch_size",
            "Texts per embedding call: queries batched together, or an ingest batch.",
            ["kind"],
            buckets=BATCH_BUCKETS,
        )
        self.query_cache = counter("ks_query_embedding_cache", "Query-embedding cache lookups.", ["result"])
        self.search_seconds = histogram(
            "ks_search_duration_seconds", "Search latency (/v1/search).", ["mode"], buckets=STAGE_BUCKETS
        )
        self.search_stage_seconds = histogram(
            "ks_search_stage_duration_seconds", "Search latency by stage.", ["stage"], buckets=STAGE_BUCKETS
        )
        self.chat_seconds = histogram(
            "ks_chat_duration_seconds",
            "Chat latency, to the whole answer.",
            ["provider", "stream"],
            buckets=CHAT_BUCKETS,
        )
        self.chat_ttft_seconds = histogram(
            "ks_chat_time_to_first_token_seconds",
            "Streamed chat: time to the first words.",
            ["provider"],
            buckets=CHAT_BUCKETS,
        )
        self.model_tokens = counter("ks_model_tokens", "Chat model tokens.", ["provider", "model", "direction"])
        self.store_errors = counter("ks_store_errors", "Requests answered 503 because a store failed.")
        self._jobs = _JobsCollector()
        r.register(self._jobs)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def watch_jobs(self, count: Callable[[], dict[str, int]]) -> None:
        """``count`` returns the queued and running ingest jobs (read at scrape time)."""
        self._jobs.count = count

    # --- app.core.events.Observer: the services report here once the app attaches these metrics ---
    def model_called(self, kind: str, texts: int, seconds: float) -> None:
        self.embedding_seconds.labels(kind).inc(seconds)
        self.embedded_texts.labels(kind).inc(texts)
        self.embedding_batch.labels(kind).observe(texts)

    def query_cache_used(self, hit: bool) -> None:
        self.query_cache.labels("hit" if hit else "miss").inc()

    def search_finished(self, mode: str, took_ms: float, timings_ms: dict[str, float]) -> None:
        self.search_seconds.labels(mode).observe(took_ms / 1000)
        for stage, ms in timings_ms.items():
            self.search_stage_seconds.labels(stage).observe(ms / 1000)

    def ingest_job_finished(self, status: str, seconds: float, chunks: int) -> None:
        self.ingest_jobs.labels(status).inc()
        self.ingest_seconds.labels(status).observe(seconds)
        if status == "succeeded":
            self.chunks_indexed.inc(chunks)


class _JobsCollector:
    """Queued and running ingest jobs, counted in the metadata store at scrape time (the index on status)."""

    def __init__(self) -> None:
        self.count: Callable[[], dict[str, int]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("ks_ingest_jobs_active", "Ingest jobs queued or running.", labels=["status"])
        counts = {JobStatus.QUEUED.value: 0, JobStatus.RUNNING.value: 0}
        if self.count is not None:
            try:
                counts.update(self.count())
            except Exception:  # a scrape must not fail because the database is away; readyz reports that
                return
        for status, n in counts.items():
            gauge.add_metric([status], n)
        yield gauge

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected lazily: the registry must not query the database when it is created


# --- middleware --------------------------------------------------------------------------------------
class ObservabilityMiddleware:
    """Request id in and out, request metrics by route template, and one access log line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = accept_request_id(Headers(scope=scope).get("x-request-id"))
        # Not reset afterwards: each request runs in its own task (its own context), and the error handler
        # outside this middleware should still log the id.
        client = scope.get("client")
        ctx = RequestContext(request_id=rid, client_addr=client[0] if client else None)
        request_context.set(ctx)
        started, status, sent = time.perf_counter(), 500, False
        method = scope["method"] if scope["method"] in _METHODS else "other"  # clients may send any token

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status, sent = message["status"], True
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Answer unexpected errors here rather than in Starlette's outermost error middleware, so the
            # 500 carries the request id as well (the app's handler logs the traceback).
            handler = getattr(scope.get("app"), "exception_handlers", {}).get(Exception)
            if sent or handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.request_seconds.labels(method, route).observe(seconds)
            access_log.log(
                logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
                "%s %s %s %.1f ms",
                method,
                route,
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "request_id": rid,
                    "key_id": ctx.key_id,
                },
            )


def _route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/documents/{document_id}``), never the raw path: bounded labels."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"


_DOCUMENT = re.compile(r"/v1/documents/[^/]+")


def _is_upload(method: str, path: str) -> bool:
    """Upload and replace take a document (KS_MAX_UPLOAD_MB, checked as it streams in), not a small body."""
    return (method == "POST" and path == "/v1/documents") or (method == "PUT" and _DOCUMENT.fullmatch(path) is not None)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for request bodies over the limit, except upload and replace, which have their own (KS_MAX_UPLOAD_MB)."""

    def __init__(self, app: ASGIApp, limit_bytes: int) -> None:
        self.app, self.limit = app, limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_upload(scope["method"], get_route_path(scope)):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        received = int(declared) if declared.isdigit() and int(declared) > self.limit else 0
        exceeded, sent = False, False

        # Refused when the app first reads past the limit (at once when Content-Length says so), not before
        # routing: the request still gets its route label, and nothing over the limit is read.
        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if received <= self.limit:
                message = await receive()
                received += len(message.get("body", b""))
            if received > self.limit:
                exceeded = True
                raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal sent
            if not exceeded:  # once over the limit, the app's reply (FastAPI makes it a 400) gives way to ours
                sent = True
                await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not sent:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is larger than {self.limit} bytes (KS_MAX_BODY_MB); send less"
        await problem_response(Request(scope), 413, detail, title="Payload too large")(scope, receive, send)


def install(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Middleware (outermost first: request id/metrics/log, CORS, body limit), store error count, tracing."""
    app_errors = app.exception_handlers.get(AppError)  # problems.install's handler, which answers it
    if app_errors is not None:

        async def store_unavailable(request: Request, exc: Exception) -> Any:
            metrics.store_errors.inc()
            response = app_errors(request, exc)
            return await response if isawaitable(response) else response

        app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_middleware(BodyLimitMiddleware, limit_bytes=int(settings.max_body_mb * 1024 * 1024))
    if settings.cors_origins:  # empty: no CORS headers at all, browsers on other origins are refused
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "X-On-Behalf-Of"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    app.state.tracer_provider = setup_tracing(app, settings)


# --- logging -----------------------------------------------------------------------------------------
class RequestIdFilter(logging.Filter):
    def __init__(self, missing: str | None = None) -> None:
        super().__init__()
        self._missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            ctx = request_context.get()
            record.request_id = ctx.request_id if ctx is not None else self._missing
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's copy of the message with ANSI colours
    )


class _RequestSuffix(logging.Filter):
    """`` [request id]`` after a text line written while serving a request, nothing otherwise."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = request_context.get()
        rid = getattr(record, "request_id", None) or (ctx.request_id if ctx is not None else None)
        record.request_suffix = f" [{rid}]" if rid else ""
        return True


def text_formatter(colors: bool) -> logging.Formatter:
    """Lines as uvicorn writes them on a terminal (``INFO:     ...``, the level coloured), with time and logger."""
    from uvicorn.logging import DefaultFormatter

    return DefaultFormatter(
        "%(levelprefix)s %(asctime)s %(name)s: %(message)s%(request_suffix)s", datefmt="%H:%M:%S", use_colors=colors
    )


def configure_logging(fmt: str, level: str | int = "INFO", stream: IO[str] | None = None) -> None:
    """Send every log record (uvicorn's included) to stderr: readable lines on a terminal, one JSON object per
    line otherwise. ``fmt`` is "auto" (that choice), "json" or "text"."""
    stream = stream or sys.stderr
    tty = _isatty(stream)
    handler = logging.StreamHandler(stream)
    if fmt == "json" or (fmt == "auto" and not tty):
        handler.setFormatter(json_formatter())
        handler.addFilter(RequestIdFilter())
    else:
        handler.setFormatter(text_formatter(colors=tty))
        handler.addFilter(_RequestSuffix())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


# --- tracing (optional extra "otel") -----------------------------------------------------------------
def setup_tracing(app: FastAPI, settings: Settings, exporter: Any = None) -> Any:
    """With KS_OTEL_ENABLED, trace requests and export spans as the standard OTEL_* variables say
    (OTLP over HTTP by default; OTEL_TRACES_EXPORTER=console|none). Off: nothing of OpenTelemetry's SDK
    or instrumentation is imported."""
    if not settings.otel_enabled:
        return None
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            "KS_OTEL_ENABLED=true needs the otel extra: pip install 'knowledge-search[otel]'"
        ) from exc

    defaults = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "knowledge-search"}
    provider = TracerProvider(resource=Resource.create(defaults))
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif kind == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif kind != "none":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "healthz,readyz,metrics")
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=excluded)
    return provider
