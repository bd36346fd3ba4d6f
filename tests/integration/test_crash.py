"""kill -9 a real `knowledge-search serve` in the middle of ingest, restart it, and nothing is lost or left over."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from app.core.config import Settings
from tests.integration.test_process import BIN, Server, _env

pytestmark = pytest.mark.process
FAST_RECOVERY = {"KS_JOB_LEASE_S": "2", "KS_JOB_BACKOFF_S": "0", "KS_EMBED_BATCH_SIZE": "8"}


def _long_document() -> str:
    paragraphs = [
        f"Section {i}. The maintenance schedule for building {i} lists the boiler check, the lift inspection "
        f"and the fire door test. Contractor number {i} signs the log after each visit, and the facilities team "
        f"files the report within {i % 5 + 1} days so that auditors can trace every step."
        for i in range(90)
    ]
    return "\n\n".join(paragraphs)


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def start(settings: Settings):  # type: ignore[no-untyped-def]
    """Start servers that are always stopped at the end, whatever the test did."""
    started: list[Server] = []

    def _start(*args: str, **env: str) -> Server:
        started.append(Server(settings, *args, **env))
        return started[-1]

    yield _start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_kill_during_embedding_and_indexing_then_restart(settings: Settings, start):
    server = start(**FAST_RECOVERY)
    http = httpx.Client(base_url=server.url, timeout=30)
    try:
        r = http.post("/v1/documents?wait=false", json={"text": _long_document(), "title": "Maintenance"})
        assert r.status_code == 202
        doc_id, job_id = r.json()["id"], r.json()["job"]["id"]
        # first kill: while chunks are being embedded and written
        _wait(lambda: http.get(f"/v1/jobs/{job_id}").json()["progress_done"] >= 16, 120, "embedding to start")
        server.proc.kill()
        server.proc.wait()
    finally:
        http.close()

    server = start(**FAST_RECOVERY)
    http = httpx.Client(base_url=server.url, timeout=30)
    try:
        # second kill: after the restart has taken the job up again
        _wait(lambda: http.get(f"/v1/jobs/{job_id}").json()["attempts"] >= 2, 120, "the job to be retried")
        server.proc.kill()
        server.proc.wait()
    finally:
        http.close()

    server = start(**FAST_RECOVERY)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            doc = _wait(
                lambda: (d := http.get(f"/v1/documents/{doc_id}").json())["status"] == "indexed" and d,
                180,
                "the document to be indexed",
            )
            chunks = http.get(f"/v1/documents/{doc_id}/chunks").json()["items"]
            assert len(chunks) == doc["chunk_count"] > 16
            assert [c["ordinal"] for c in chunks] == list(range(len(chunks)))  # all there, none twice
            assert doc["job"]["status"] == "succeeded" and doc["job"]["attempts"] >= 3
            hits = http.post("/v1/search", json={"query": "lift inspection contractor log", "top_k": 50}).json()
            assert {h["document_id"] for h in hits["results"]} == {doc_id}
    finally:
        server.stop()
    doctor = subprocess.run([str(BIN), "doctor"], env=_env(settings), capture_output=True, text=True, timeout=120)
    assert doctor.returncode == 0 and "consistent" in doctor.stdout, doctor.stdout + doctor.stderr


def test_kill_right_after_accepting_an_upload(settings: Settings, start):
    server = start(KS_INGEST_WORKERS="0", **FAST_RECOVERY)  # nothing runs the job before the kill
    try:
        r = httpx.post(f"{server.url}/v1/documents?wait=false", json={"text": "Keys are returned to security."})
        assert r.status_code == 202
    finally:
        server.proc.kill()
        server.proc.wait()
    server = start(**FAST_RECOVERY)
    try:
        doc = _wait(
            lambda: (d := httpx.get(f"{server.url}/v1/documents/{r.json()['id']}").json())["status"] == "indexed" and d,
            60,
            "the queued document to be indexed",
        )
        assert doc["chunk_count"] == 1
    finally:
        server.stop()


def test_worker_process_takes_jobs_from_the_shared_queue(settings: Settings, start):
    server = start(KS_INGEST_WORKERS="0")  # the API only queues
    worker = subprocess.Popen(
        [str(BIN), "worker"], env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        r = httpx.post(f"{server.url}/v1/documents?wait=false", json={"text": "Coffee beans are restocked on Mondays."})
        doc_id = r.json()["id"]
        _wait(
            lambda: httpx.get(f"{server.url}/v1/documents/{doc_id}").json()["status"] == "indexed",
            60,
            "the worker process to index the document",
        )
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else ""
