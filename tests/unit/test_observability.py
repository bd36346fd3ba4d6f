"""Metrics, request ids, access logs, the gateway settings and readiness timeouts, as a client or operator sees them."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.container import build_container
from app.core.config import Settings
from app.core.errors import StoreUnavailable
from app.core.observability import RequestIdFilter, configure_logging, json_formatter
from app.main import create_app
from tests.helpers import PROBLEM

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path, embedder: Any) -> Iterator[MakeClient]:
    """A client for an embedded-backend app built with these settings overrides."""
    stack: list[tuple[TestClient, Any]] = []

    def make(root_path: str = "", **overrides: Any) -> TestClient:
        base = {"data_dir": tmp_path / f"data{len(stack)}", "admin_key": None, "ingest_workers": 0}
        container = build_container(Settings(**{**base, **overrides}), embedder=embedder)
        client = TestClient(create_app(container=container), root_path=root_path, base_url="http://localhost")
        client.__enter__()
        stack.append((client, container))
        return client

    yield make
    for client, container in stack:
        client.__exit__(None, None, None)
        container.close()


@contextmanager
def json_lines(logger: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The lines the logger writes meanwhile, through the JSON formatter that `serve` uses."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    logging.getLogger(logger).addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        logging.getLogger(logger).removeHandler(handler)


def sample(client: TestClient, name: str, **labels: str) -> float:
    """One sample of /metrics, 0 when absent."""
    text = client.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return 0.0


# --- metrics ------------------------------------------------------------------------------------------
def test_search_is_counted_by_route_template_and_stage(make_client: MakeClient) -> None:
    client = make_client()
    doc = client.post("/v1/documents", json={"title": "Memo", "text": "The office closes at 22:00 on Fridays."})
    assert doc.status_code == 201
    assert sample(client, "ks_search_duration_seconds_count", mode="hybrid") == 0
    assert client.post("/v1/search", json={"query": "office hours", "mode": "hybrid"}).status_code == 200
    assert client.get(f"/v1/documents/{doc.json()['id']}").status_code == 200

    assert sample(client, "ks_search_duration_seconds_count", mode="hybrid") == 1
    assert sample(client, "ks_embedded_texts_total", kind="query") == 1
    for stage in ("keyword", "embed", "vector"):
        assert sample(client, "ks_search_stage_duration_seconds_count", stage=stage) == 1
    assert sample(client, "ks_http_requests_total", method="POST", route="/v1/search", status="200") == 1
    assert sample(client, "ks_http_request_duration_seconds_count", method="POST", route="/v1/search") == 1
    # the same query again (spaced differently) is served from the query-embedding cache: no second model call
    assert client.post("/v1/search", json={"query": " office  hours", "mode": "semantic"}).status_code == 200
    assert sample(client, "ks_query_embedding_cache_total", result="miss") == 1
    assert sample(client, "ks_query_embedding_cache_total", result="hit") == 1
    assert sample(client, "ks_embedded_texts_total", kind="query") == 1
    assert sample(client, "ks_embedding_batch_size_count", kind="query") == 1
    # the template, never the raw path with its id
    text = client.get("/metrics").text
    assert 'route="/v1/documents/{document_id}"' in text
    assert doc.json()["id"] not in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_ingest_chat_and_token_metrics(make_client: MakeClient) -> None:
    client = make_client()
    client.post("/v1/documents", json={"text": "Visitors park on level B2 of the north garage."})
    assert sample(client, "ks_ingest_jobs_total", status="succeeded") == 1
    assert sample(client, "ks_ingest_job_duration_seconds_count", status="succeeded") == 1
    assert sample(client, "ks_chunks_indexed_total") >= 1
    assert sample(client, "ks_embedded_texts_total", kind="documents") == sample(client, "ks_chunks_indexed_total")
    assert sample(client, "ks_embedding_seconds_total", kind="documents") > 0
    assert sample(client, "ks_embedded_texts_total", kind="query") == 0
    # no worker in this app: a wait=false upload stays queued, and the gauge says so
    assert client.post("/v1/documents?wait=false", json={"text": "Queued text."}).status_code == 202
    assert sample(client, "ks_ingest_jobs_active", status="queued") == 1

    with client.stream("POST", "/v1/chat", json={"message": "Where do visitors park?", "stream": True}) as r:
        assert "event: done" in "".join(r.iter_text())
    assert client.post("/v1/chat", json={"message": "Where do visitors park?"}).status_code == 200
    assert sample(client, "ks_chat_time_to_first_token_seconds_count", provider="local") == 1
    assert sample(client, "ks_chat_duration_seconds_count", provider="local", stream="true") == 1
    assert sample(client, "ks_chat_duration_seconds_count", provider="local", stream="false") == 1
    assert sample(client, "ks_model_tokens_total", provider="local", model="extractive", direction="in") > 0
    assert sample(client, "ks_model_tokens_total", provider="local", model="extractive", direction="out") > 0


def test_store_errors_are_counted_and_answered_503(make_client: MakeClient) -> None:
    client = make_client()

    @client.app.get("/test-store-down")  # type: ignore[attr-defined]
    def store_down() -> None:
        raise StoreUnavailable("the chunk store did not answer")

    r = client.get("/test-store-down")
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
    assert sample(client, "ks_store_errors_total") == 1


def test_apps_keep_their_own_metrics(make_client: MakeClient) -> None:
    first, second = make_client(), make_client()
    first.get("/healthz")
    assert sample(first, "ks_http_requests_total", method="GET", route="/healthz", status="200") == 1
    assert sample(second, "ks_http_requests_total", method="GET", route="/healthz", status="200") == 0


# --- request ids and the access log -----------------------------------------------------------------
def test_request_id_comes_back_and_is_logged(make_client: MakeClient) -> None:
    client = make_client(admin_key=SecretStr("k-123"))
    with json_lines("app.http") as lines:
        r = client.post(
            "/v1/search",
            json={"query": "anything"},
            headers={"X-Request-ID": "gw.42-a_b", "Authorization": "Bearer k-123"},
        )
    assert r.headers["x-request-id"] == "gw.42-a_b"
    line = next(x for x in lines() if x["request_id"] == "gw.42-a_b")
    assert line["route"] == "/v1/search" and line["method"] == "POST" and line["status"] == 200
    assert line["key_id"] == "admin" and line["level"] == "INFO" and isinstance(line["duration_ms"], float)
    assert "k-123" not in json.dumps(line)  # the key itself is never logged

    for bad in ("has spaces", "x" * 129, "semi;colon"):
        generated = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)


def test_request_id_reaches_logs_written_in_worker_threads(make_client: MakeClient) -> None:
    client = make_client()

    @client.app.get("/test-log")  # type: ignore[attr-defined]
    def log_something() -> dict[str, str]:  # sync: runs in the thread pool, like provider calls
        logging.getLogger("app.providers.test").warning("calling the model")
        return {}

    with json_lines("app.providers.test") as lines:
        client.get("/test-log", headers={"X-Request-ID": "trace-me"})
    assert [x["request_id"] for x in lines()] == ["trace-me"]


def test_unexpected_errors_carry_the_request_id(make_client: MakeClient) -> None:
    client = make_client()

    @client.app.get("/test-crash")  # type: ignore[attr-defined]
    def crash() -> None:
        raise RuntimeError("boom")

    r = client.get("/test-crash", headers={"X-Request-ID": "crash-1"})
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    assert r.headers["x-request-id"] == "crash-1"
    assert sample(client, "ks_http_requests_total", method="GET", route="/test-crash", status="500") == 1


def test_log_format_text_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("text")
        logging.getLogger("app.test").warning("plain words")
        configure_logging("json")
        logging.getLogger("app.test").warning("json words")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    text_line, json_line = capsys.readouterr().err.splitlines()[-2:]
    assert re.fullmatch(r"WARNING:  \d\d:\d\d:\d\d app\.test: plain words", text_line), text_line
    assert json.loads(json_line) | {"time": None} == {
        "level": "WARNING",
        "logger": "app.test",
        "message": "json words",
        "request_id": None,
        "time": None,
    }


def test_log_format_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    import os
    import pty

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    controller, terminal = pty.openpty()
    piped = io.StringIO()
    try:
        with os.fdopen(terminal, "w", closefd=False) as tty:
            configure_logging("auto", stream=tty)
            logging.getLogger("app.test").info("to a person")
            tty.flush()
        configure_logging("auto", stream=piped)
        logging.getLogger("app.test").info("to a collector")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        os.close(terminal)
    on_terminal = os.read(controller, 4096).decode()
    os.close(controller)
    assert "\x1b[32mINFO\x1b[0m:" in on_terminal and "app.test: to a person" in on_terminal  # coloured, as uvicorn
    assert json.loads(piped.getvalue())["message"] == "to a collector"


# --- gateway ------------------------------------------------------------------------------------------
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


def test_cors_is_closed_by_default(make_client: MakeClient) -> None:
    client = make_client()
    r = client.options("/v1/search", headers={"Origin": "https://elsewhere.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in r.headers
    r = client.post("/v1/search", json={"query": "x"}, headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_allows_only_listed_origins(make_client: MakeClient) -> None:
    client = make_client(cors_origins=["https://portal.example"])
    ok = client.options("/v1/search", headers={"Origin": "https://portal.example", **PREFLIGHT})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://portal.example"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    bad = client.options("/v1/search", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in bad.headers
    # the API has PATCH and PUT too: a browser's preflight for them is allowed
    for method in ("PATCH", "PUT", "DELETE"):
        pre = {**PREFLIGHT, "Access-Control-Request-Method": method}
        r = client.options("/v1/documents/abc", headers={"Origin": "https://portal.example", **pre})
        assert r.status_code == 200 and method in r.headers["access-control-allow-methods"], method


def test_large_json_bodies_get_413_problem(make_client: MakeClient) -> None:
    client = make_client()
    big = json.dumps({"query": "x" * (2 * 1024 * 1024)})
    r = client.post("/v1/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    assert "KS_MAX_BODY_MB" in r.json()["detail"]
    # streamed without a Content-Length: counted as it arrives
    chunks = (big[i : i + 65536].encode() for i in range(0, len(big), 65536))
    r = client.post("/v1/search", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    assert sample(client, "ks_http_requests_total", method="POST", route="/v1/search", status="413") == 2


def test_uploads_have_their_own_limit(make_client: MakeClient) -> None:
    client = make_client(max_body_mb=0.01)  # 10 KB for ordinary bodies
    text = "Paragraph about the parking rules of the north garage.\n\n" * 300  # ~17 KB
    assert client.post("/v1/documents", json={"text": text}).status_code == 201
    assert client.post("/v1/search", json={"query": "parking", "filters": {"x": text}}).status_code == 413


def test_root_path_serves_docs_and_page_under_the_prefix(make_client: MakeClient) -> None:
    # as uvicorn serves with root_path=KS_ROOT_PATH: the gateway strips /kb, uvicorn puts it back in the path
    client = make_client(root_path="/kb")
    docs = client.get("/kb/docs")
    assert docs.status_code == 200 and 'data-openapi-url="/kb/openapi.json"' in docs.text
    spec = client.get("/kb/openapi.json").json()
    assert spec["servers"] == [{"url": "/kb"}]
    page = client.get("/kb/")
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/kb/static/app.js").status_code == 200


# --- readiness ----------------------------------------------------------------------------------------
def test_readyz_reports_a_hanging_store_as_timeout(make_client: MakeClient) -> None:
    from app.stores.vector.opensearch import OpenSearchChunkStore

    client = make_client(ready_timeout_s=0.5)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings = Settings(opensearch_url=f"http://127.0.0.1:{silent.getsockname()[1]}", opensearch_timeout_s=5)
        container = client.app.state.container  # type: ignore[attr-defined]
        container.store = OpenSearchChunkStore.from_settings(settings)
        started = time.monotonic()
        r = client.get("/readyz")
        assert time.monotonic() - started < 3
    assert r.status_code == 503
    assert r.json()["checks"] == {"metadata_store": "ok", "chunk_store": "timeout"}


# --- tracing ------------------------------------------------------------------------------------------
def test_tracing_off_imports_no_opentelemetry_sdk(tmp_path: Path) -> None:
    # FastAPI itself imports opentelemetry-api; the SDK, exporters and instrumentation stay out.
    code = f"""
import sys
from fastapi.testclient import TestClient
from app.core.config import Settings
from app.main import create_app
with TestClient(create_app(Settings(data_dir={str(tmp_path / "d")!r}, ingest_workers=0)), base_url="http://localhost") as c:
    assert c.get("/healthz").status_code == 200
loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation",
                                                  "opentelemetry.exporter"))]
print(loaded)
"""
    env = {"PATH": "/usr/bin:/bin", "KS_OTEL_ENABLED": "false"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_tracing_on_records_request_spans(tmp_path: Path, embedder: Any) -> None:
    pytest.importorskip("opentelemetry.instrumentation.fastapi", reason="the otel extra is not installed")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from app.core.observability import setup_tracing

    settings = Settings(data_dir=tmp_path / "data", ingest_workers=0)
    container = build_container(settings, embedder=embedder)
    app = create_app(container=container)
    exporter = InMemorySpanExporter()  # what create_app does with KS_OTEL_ENABLED, with the test's exporter
    enabled = settings.model_copy(update={"otel_enabled": True})
    app.state.tracer_provider = setup_tracing(app, enabled, exporter=exporter)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.post("/v1/search", json={"query": "anything"}).status_code == 200
        client.get("/healthz")
    container.close()
    routes = {s.attributes.get("http.route") for s in exporter.get_finished_spans() if s.attributes}
    assert "/v1/search" in routes and "/healthz" not in routes


# --- serve: JSON lines on stderr ----------------------------------------------------------------------
@pytest.mark.process
def test_serve_writes_json_access_lines_without_secrets(tmp_path: Path) -> None:
    from tests.integration.test_process import Server

    server = Server(Settings(data_dir=tmp_path / "data"), KS_ADMIN_KEY="serve-secret-key")
    try:
        auth = {"Authorization": "Bearer serve-secret-key", "X-Request-ID": "serve-req-1"}
        text = "The vault combination is kept by the night porter."
        assert httpx.post(f"{server.url}/v1/documents", json={"text": text}, headers=auth, timeout=60).is_success
    finally:
        server.stop()
    log = server.log.read_text()
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    access = next(x for x in lines if x.get("request_id") == "serve-req-1")
    assert access["route"] == "/v1/documents" and access["status"] == 201 and access["key_id"] == "admin"
    assert any(x["logger"].startswith("uvicorn") for x in lines)  # uvicorn's own lines are JSON too
    assert "serve-secret-key" not in log and "night porter" not in log


@pytest.mark.process
def test_serve_on_a_terminal_writes_readable_lines(tmp_path: Path) -> None:
    # what a developer sees after `knowledge-search serve` in a terminal: uvicorn-like lines, not JSON
    import os
    import pty
    import select
    import signal

    from tests.integration.test_process import BIN, _env, _free_port

    port = _free_port()
    controller, terminal = pty.openpty()
    env = _env(Settings(data_dir=tmp_path / "data"), KS_ADMIN_KEY="tty-secret-key")
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)], env=env, stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    screen = ""

    def read_until(marker: str) -> None:
        nonlocal screen
        deadline = time.monotonic() + 120
        while marker not in screen:
            assert time.monotonic() < deadline and proc.poll() is None, screen
            if select.select([controller], [], [], 0.5)[0]:
                screen += os.read(controller, 65536).decode(errors="replace")

    try:
        read_until("Application startup complete")
        auth = {"Authorization": "Bearer tty-secret-key", "X-Request-ID": "tty-req-1"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/documents", headers=auth, timeout=30).status_code == 200
        read_until("tty-req-1")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        os.close(controller)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in screen.splitlines() if line.strip()]
    assert not [line for line in lines if line.lstrip().startswith("{")], lines
    assert any(re.match(r"INFO: +\d\d:\d\d:\d\d uvicorn\.error: Application startup complete", x) for x in lines)
    access = next(x for x in lines if "tty-req-1" in x)
    assert re.match(r"INFO: +\d\d:\d\d:\d\d app\.http: GET /v1/documents 200 [\d.]+ ms \[tty-req-1\]", access)
    assert "tty-secret-key" not in screen
