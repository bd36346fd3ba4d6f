"""Queued originals in S3 (KS_BLOB_STORE=s3://bucket/prefix), so API nodes and workers on other machines share the
queue without shared disks: against moto's S3 server over HTTP, with the real boto3 client."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.container import build_container
from app.core.config import Settings
from app.ingest import payload as payload_module
from app.ingest.worker import JobWorker
from app.main import create_app
from tests.integration.test_process import BIN, Server, _env

MEMO = (
    "# Parcel room\n\nParcels for staff are kept in room 1.14 for ten working days, then returned to the sender.\n\n"
    + "\n\n".join(f"Shelf {i} holds parcels for surnames starting with {chr(65 + i % 26)}." for i in range(60))
).encode()


@pytest.fixture(autouse=True)
def spool_small_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads over 1 KiB are spooled to a file here (1 MiB in the service), so the file path to S3 is used."""
    monkeypatch.setattr(payload_module, "IN_MEMORY", 1024)


@pytest.fixture
def queue_bucket(s3: Any) -> str:
    name = f"ks-queue-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def queued(settings: Settings, embedder: Any, queue_bucket: str) -> Iterator[tuple[TestClient, Any]]:
    """A service whose queued originals go to s3://<queue bucket>/queue/, and its container."""
    settings = settings.model_copy(update={"blob_store": f"s3://{queue_bucket}/queue/"})
    container = build_container(settings, embedder=embedder)
    try:
        with TestClient(create_app(container=container)) as client:
            yield client, container
    finally:
        container.close()


def test_queued_originals_wait_in_s3_and_leave_it_once_indexed(
    queued: tuple[TestClient, Any], s3: Any, queue_bucket: str
):
    client, container = queued
    settings = container.settings
    r = client.post("/v1/documents?wait=false", files={"file": ("parcels.md", MEMO, "text/markdown")})
    assert r.status_code == 202, r.text
    doc_id = r.json()["id"]
    assert _keys(s3, queue_bucket) == [f"queue/{doc_id}"]
    stored = s3.get_object(Bucket=queue_bucket, Key=f"queue/{doc_id}")["Body"].read()
    assert stored == MEMO
    assert not (settings.data_dir / "blobs").exists() or not any((settings.data_dir / "blobs").iterdir())

    assert JobWorker(container.ingest).run_pending() == 1
    doc = client.get(f"/v1/documents/{doc_id}").json()
    assert doc["status"] == "indexed", doc
    assert _keys(s3, queue_bucket) == []  # gone once indexed
    spool = settings.data_dir / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []  # the downloaded copy too
    r = client.post("/v1/search", json={"query": "where are parcels kept", "top_k": 1})
    assert r.json()["results"][0]["document_id"] == doc_id


def test_a_job_whose_original_is_gone_fails_with_what_to_do(queued: tuple[TestClient, Any], s3: Any, queue_bucket: str):
    client, container = queued
    r = client.post("/v1/documents?wait=false", json={"text": "The gym opens at six."})
    doc_id = r.json()["id"]
    s3.delete_object(Bucket=queue_bucket, Key=f"queue/{doc_id}")
    JobWorker(container.ingest).run_pending()
    doc = client.get(f"/v1/documents/{doc_id}").json()
    assert doc["status"] == "failed"
    assert "upload the document again" in doc["error"] and doc["job"]["attempts"] == 1


@pytest.mark.parametrize("backend", ["production"])  # only shared stores let two machines work on one queue
def test_a_worker_on_another_machine_indexes_what_the_api_queued(
    settings: Settings, s3: Any, queue_bucket: str, tmp_path: Path
):
    shared = {"KS_BLOB_STORE": f"s3://{queue_bucket}/blobs", "KS_JOB_LEASE_S": "30"}
    api = Server(settings, KS_INGEST_WORKERS="0", **shared)  # this node only queues
    other_machine = settings.model_copy(update={"data_dir": tmp_path / "other-machine"})
    other_machine.data_dir.mkdir()
    worker = subprocess.Popen(
        [str(BIN), "worker"], env=_env(other_machine, **shared), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        r = httpx.post(
            f"{api.url}/v1/documents?wait=false",
            files={"file": ("parcels.md", MEMO, "text/markdown")},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        doc_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (doc := httpx.get(f"{api.url}/v1/documents/{doc_id}").json())["status"] != "indexed":
            assert doc["status"] in ("queued", "processing"), doc
            assert time.monotonic() < deadline, "the other machine's worker never indexed the document"
            time.sleep(0.3)
        assert not (settings.data_dir / "blobs").exists() or not any((settings.data_dir / "blobs").iterdir())
        assert _keys(s3, queue_bucket) == []
        r = httpx.post(f"{api.url}/v1/search", json={"query": "parcels room ten working days", "top_k": 1})
        assert r.json()["results"][0]["document_id"] == doc_id
    finally:
        worker.terminate()
        worker.wait(30)
        api.stop()
    assert worker.returncode == 0, worker.stderr.read().decode() if worker.stderr else ""
