"""Two app instances behind a real nginx (Debian's), configured by deploy/nginx/knowledge-search.conf, under the
path prefix /kb with KS_ROOT_PATH: Swagger UI works under the prefix, a streamed chat answer arrives event by event,
the caller's address (X-Forwarded-For from the trusted gateway) is what the audit records and a forged header does
not change it, X-Request-ID goes through, one key's rate limit holds across both instances, and killing one
instance costs no more than the requests it was serving."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from tests.conftest import _truncate
from tests.deploy.conftest import ROOT, figure, free_port, need_program, wait_until
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_process import Server

pytestmark = pytest.mark.gateway
ADMIN = "gateway-test-admin-key"
LIMIT = 300
CLIENT = "127.0.0.2"  # the test's client binds this loopback address, so it differs from the gateway's


class Gateway:
    def __init__(self, tmp: Path, upstreams: list[int]) -> None:
        need_program("nginx", "apt-get install nginx-light")
        self.port = free_port()
        site = (ROOT / "deploy" / "nginx" / "knowledge-search.conf").read_text()
        site = site.replace("kb-1.internal:8000", f"127.0.0.1:{upstreams[0]}")
        site = site.replace("kb-2.internal:8000", f"127.0.0.1:{upstreams[1]}")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        tmp.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o777)
        conf = tmp / "nginx.conf"
        conf.write_text(
            f"""
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{site}
}}
"""
        )
        check = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"], stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.port), 1), 20, "nginx listening")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


@pytest.fixture(scope="module")
def stack(migrated_postgres: str, opensearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    _truncate(migrated_postgres)
    tmp = tmp_path_factory.mktemp("gateway")
    index = f"ks-gw-{os.getpid()}"
    fake = FakeOpenAI(stream_interval=0.4)  # a model that writes slowly, so streaming is visible
    fake.__enter__()
    env = dict(
        KS_ADMIN_KEY=ADMIN,
        KS_ROOT_PATH="/kb",
        KS_FORWARDED_ALLOW_IPS="127.0.0.1",
        KS_RATE_LIMIT_PER_MINUTE=str(LIMIT),
        KS_CHAT_PROVIDER="openai",
        KS_OPENAI_BASE_URL=fake.base_url,
        KS_CHAT_MODEL="llama3.1:8b",
    )
    servers = []
    for i in range(2):
        settings = Settings(
            data_dir=tmp / f"app{i}",
            database_url=migrated_postgres,
            vector_store="opensearch",
            opensearch_url=opensearch_url,
            opensearch_index=index,
        )
        servers.append(Server(settings, **env))
    gateway = Gateway(tmp / "nginx", [s.port for s in servers])
    try:
        yield {"gateway": gateway, "servers": servers, "fake": fake}
    finally:
        gateway.stop()
        for s in servers:
            if s.proc.poll() is None:
                s.stop()
        fake.__exit__(None, None, None)
        httpx.delete(f"{opensearch_url.split(',')[0]}/{index}*", timeout=30)


def _client(url: str, key: str = ADMIN) -> httpx.Client:
    # from another loopback address than the gateway's own, like a caller on another machine
    transport = httpx.HTTPTransport(local_address=CLIENT)
    return httpx.Client(base_url=url, transport=transport, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_swagger_ui_and_openapi_under_the_prefix(stack: dict):
    with _client(stack["gateway"].url) as http:
        docs = http.get("/kb/docs")
        assert docs.status_code == 200 and "/kb/openapi.json" in docs.text
        assert http.get("/kb/openapi.json").json()["paths"]["/v1/search"]
        assert http.get("/kb", follow_redirects=False).headers["location"].endswith("/kb/")
        assert http.get("/kb/metrics").status_code == 404  # metrics stay off the public gateway


def test_sse_streams_through_the_gateway(stack: dict):
    with _client(stack["gateway"].url) as http:
        doc = http.post("/kb/v1/documents", json={"title": "Leave", "text": "Employees receive 20 days of paid leave."})
        assert doc.status_code == 201, doc.text
        arrivals: list[tuple[float, str]] = []
        started = time.monotonic()
        with http.stream("POST", "/kb/v1/chat", json={"message": "How many days of paid leave?", "stream": True}) as r:
            assert r.status_code == 200  # nginx consumes X-Accel-Buffering; the app's own reply carries it:
            for line in r.iter_lines():
                if line.startswith("event:"):
                    arrivals.append((time.monotonic() - started, line.split(":", 1)[1].strip()))
    direct = httpx.post(
        f"{stack['servers'][0].url}/v1/chat",
        json={"message": "How many days of paid leave?", "stream": True},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=60,
    )
    assert direct.headers["x-accel-buffering"] == "no"
    kinds = [k for _, k in arrivals]
    assert kinds[0] == "citations" and kinds[-1] == "done" and "delta" in kinds, kinds
    first, last = arrivals[0][0], arrivals[-1][0]
    figure("gateway SSE: first event / done (s)", f"{first:.2f} / {last:.2f}")
    assert last - first > 0.8, "the events arrived together: nginx buffered the stream"


def test_forwarded_for_and_request_id_reach_the_app(stack: dict):
    with _client(stack["gateway"].url) as http:
        r = http.post(
            "/kb/v1/search",
            json={"query": "paid leave"},
            headers={"X-Request-ID": "gw-test-0001", "X-Forwarded-For": "203.0.113.9"},  # a forged hop
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == "gw-test-0001"
        fresh = http.post("/kb/v1/search", json={"query": "paid leave"})
        assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"]), fresh.headers  # nginx's own id
        events = http.get("/kb/v1/audit", params={"action": "search"}).json()["items"]
    event = next((e for e in events if e.get("request_id") == "gw-test-0001"), None)
    assert event is not None, events[:3]
    assert event["client_addr"] == CLIENT  # not the gateway's 127.0.0.1, not the forged 203.0.113.9


def test_rate_limit_holds_across_both_instances(stack: dict):
    gateway, servers = stack["gateway"], stack["servers"]
    with _client(gateway.url) as admin:
        key = admin.post("/kb/v1/keys", json={"name": "limited", "scopes": ["read"]}).json()["key"]
    before = [_listings(s.url) for s in servers]
    statuses = []
    with _client(gateway.url, key) as http:
        for _ in range(LIMIT + 20):
            statuses.append(http.get("/kb/v1/documents", params={"limit": 1}).status_code)
    served = [_listings(s.url) - b for s, b in zip(servers, before, strict=True)]
    figure(
        "gateway rate limit: requests / 200 / 429 (limit per key)",
        f"{len(statuses)} / {statuses.count(200)} / {statuses.count(429)} ({LIMIT}/min), instances served {served}",
    )
    assert all(n > 0 for n in served), served  # both instances took part
    assert statuses.count(200) == LIMIT and statuses.count(429) == 20, statuses


def _listings(url: str) -> int:
    """GET /v1/documents requests this instance answered (any status), from its own /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pattern = r'ks_http_requests_total\{method="GET",route="/v1/documents",status="\d+"\} (\S+)'
    return sum(int(float(m.group(1))) for m in re.finditer(pattern, text))


def test_an_instance_dies_behind_the_gateway(stack: dict):
    gateway, servers = stack["gateway"], stack["servers"]
    results: list[tuple[float, int]] = []
    stop = threading.Event()
    with _client(gateway.url) as admin:
        key = admin.post("/kb/v1/keys", json={"name": "failover", "scopes": ["read"]}).json()["key"]

    def load() -> None:
        with _client(gateway.url, key) as http:
            for _ in range(1000):  # bounded; paced to stay under the key's rate limit
                if stop.wait(0.04):
                    return
                try:
                    status = http.get("/kb/v1/documents", params={"limit": 1}).status_code
                except httpx.HTTPError:
                    status = 0
                results.append((time.monotonic(), status))

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(2)
    killed_at = time.monotonic()
    servers[1].proc.send_signal(signal.SIGKILL)
    time.sleep(8)
    stop.set()
    thread.join(30)
    after = [s for t, s in results if t >= killed_at]
    failed = [s for s in after if s != 200]
    figure(
        "gateway failover: one of two instances killed (SIGKILL) under load",
        f"{len(after)} requests after the kill, {len(failed)} failed",
    )
    assert after and len(failed) <= 2, failed  # at most what was in flight on the killed instance
    assert all(s == 200 for s in after[-20:])
