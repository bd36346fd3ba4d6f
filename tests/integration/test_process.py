"""A real `knowledge-search serve` process: ingest, search, chat, restart, and everything is still there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings

pytestmark = pytest.mark.process
BIN = Path(sys.executable).parent / "knowledge-search"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KS_")}
    env.update(
        KS_DATA_DIR=str(settings.data_dir),
        KS_DATABASE_URL=settings.resolved_database_url,
        KS_VECTOR_STORE=settings.vector_store,
        KS_OPENSEARCH_URL=settings.opensearch_url,
        KS_OPENSEARCH_INDEX=settings.opensearch_index,
        **extra,
    )
    return env


class Server:
    def __init__(self, settings: Settings, *args: str, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = settings.data_dir.parent / f"serve-{self.port}.log"
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port), *args],
            env=_env(settings, **env),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"server did not answer within 120 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_serve_ingest_search_chat_restart(settings: Settings):
    server = Server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/readyz").status_code == 200
            assert http.get("/docs").status_code == 200
            doc = http.post(
                "/v1/documents",
                files={"file": ("ja.md", "# 規程\n\n在宅勤務は週3日まで認められます。\n".encode())},
                data={"collection": "hr"},
            ).json()
            assert doc["status"] == "indexed"
            hits = http.post("/v1/search", json={"query": "在宅勤務は何日", "mode": "keyword"}).json()["results"]
            assert hits and hits[0]["document_id"] == doc["id"]
            queued = http.post("/v1/documents?wait=false", json={"text": "The office closes at 22:00 on Fridays."})
            assert queued.status_code == 202
            # the in-process worker picks the job up
            deadline = time.monotonic() + 60
            while http.get(f"/v1/documents/{queued.json()['id']}").json()["status"] != "indexed":
                assert time.monotonic() < deadline, "queued document was never indexed"
                time.sleep(0.3)
    finally:
        server.stop()
    # uvicorn re-raises SIGTERM after a graceful shutdown
    assert server.proc.returncode in (0, -signal.SIGTERM), server.log.read_text()
    assert "Application shutdown complete" in server.log.read_text()

    server = Server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            ids = {d["id"] for d in http.get("/v1/documents").json()["items"]}
            assert doc["id"] in ids and queued.json()["id"] in ids
            for mode in ("keyword", "semantic", "hybrid"):
                hits = http.post("/v1/search", json={"query": "在宅勤務は週何日", "mode": mode}).json()["results"]
                assert hits[0]["document_id"] == doc["id"], mode
            answer = http.post("/v1/chat", json={"message": "When does the office close on Fridays?"}).json()
            assert "22:00" in answer["answer"] and answer["citations"]
    finally:
        server.stop()


def test_serve_sample_loads_the_corpus(tmp_path: Path):
    # the quick start of README command 1: the embedded default with the bundled samples
    server = Server(Settings(data_dir=tmp_path / "data"), "--sample")
    try:
        docs = httpx.get(f"{server.url}/v1/documents", params={"collection": "samples"}).json()["items"]
        assert len(docs) == 6 and all(d["status"] == "indexed" for d in docs)
        assert httpx.get(f"{server.url}/docs").status_code == 200
    finally:
        server.stop()


def test_refuses_public_interface_without_a_key(settings: Settings):
    proc = subprocess.run(
        [str(BIN), "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "KS_ADMIN_KEY" in proc.stderr


def test_cli_ingest_search_ask(settings: Settings, tmp_path: Path):
    folder = tmp_path / "docs"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.md").write_text("# Parking\n\nVisitors park on level B2 of the north garage.\n")
    (folder / "nested" / "b.txt").write_text("The north garage closes at midnight.\n")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    env = _env(settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)

    first = run("ingest", str(folder), "--collection", "facilities")
    assert first.returncode == 0, first.stderr
    assert "indexed 2, unchanged 0, failed 0" in first.stderr
    again = run("ingest", str(folder), "--collection", "facilities")
    assert "indexed 0, unchanged 2, failed 0" in again.stderr
    found = run("search", "where do visitors park", "--top-k", "1")
    assert found.returncode == 0 and "B2" in found.stdout
    answer = run("ask", "Where do visitors park?")
    assert answer.returncode == 0 and "level B2" in answer.stdout and "[1]" in answer.stdout


def test_cli_keys_create_list_revoke(settings: Settings):
    env = _env(settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), "keys", *args], env=env, capture_output=True, text=True, timeout=120)

    created = run("create", "portal", "--scope", "read", "--principal", "group:hr", "--collection", "hr")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("ks_") and "\n" not in secret
    listed = run("list")
    assert "portal" in listed.stdout and "group:hr" in listed.stdout and secret not in listed.stdout
    key_id = created.stderr.split("created key ")[1].split()[0]
    assert run("revoke", key_id).returncode == 0
    revoked_row = next(line for line in run("list").stdout.splitlines() if "portal" in line)
    assert "yes" in revoked_row
    assert run("create", "bad", "--scope", "root").returncode == 2
    # the key created from the CLI works against a running service
    server = Server(settings, **{})
    try:
        new = run("create", "reader", "--scope", "read").stdout.strip()
        headers = {"Authorization": f"Bearer {new}"}
        assert httpx.get(f"{server.url}/v1/documents", headers=headers).status_code == 200
        assert httpx.get(f"{server.url}/v1/documents").status_code == 401  # keys exist: no anonymous access
    finally:
        server.stop()
