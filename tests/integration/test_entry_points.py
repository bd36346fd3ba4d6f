"""One way in: the same situation has the same outcome through every entry point, on both backends.

The API upload (by external_id), the API replace (PUT), a registered S3 source's sync and the folder ingest (the
CLI's `ingest DIR`, also run as a real process) all go through ``IngestService.upsert``; each situation below is
played through each of them and the outcomes, normalised to one word and the reason, must be equal:
unchanged, replaced, refused (a file that cannot be a document), and a transient failure (the model provider
is down: nothing is lost, the document is kept queued and the reason says it is retried).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.access.caller import SYSTEM
from app.container import build_container
from app.core.config import Settings
from app.core.errors import ProviderUnavailable
from app.ingest.sources.folder import FolderIngest
from app.main import create_app
from tests.integration.test_process import _env

BIN = Path(sys.executable).parent / "knowledge-search"
V1 = b"# Parking\n\nVisitors park on level B2 of the north garage.\n"
V2 = b"# Parking\n\nVisitors now park on level C3 of the south garage.\n"
BAD = b"%PDF-1.7\n this is not a PDF \x00\x01"


class DownEmbedder:
    """A model provider that is unreachable for documents (queries still work, so the stores can start)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.model_id, self.dimension = inner, inner.model_id, inner.dimension

    def embed_documents(self, texts: Any) -> np.ndarray:
        raise ProviderUnavailable("the embedding model did not answer")

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def reason(text: str) -> str:
    """The part of a failure message every entry point shares (sources prefix the object, the API adds a job)."""
    return "transient" if "retried" in text or "retry" in text else ("refused" if "PDF" in text else text)


# --- one function per entry point: (bytes of version 1, bytes of version 2) -> outcome of version 2 ----------
def via_api(client: TestClient, first: bytes, second: bytes) -> str:
    ext = f"doc-{uuid.uuid4().hex[:8]}"

    def post(data: bytes) -> Any:
        return client.post(
            "/v1/documents", files={"file": ("parking.md", data)}, data={"external_id": ext, "collection": "entry"}
        )

    r1 = post(first)
    assert r1.status_code == 201, r1.text
    r2 = post(second)
    return _api_outcome(r2, r1.json()["id"])


def via_put(client: TestClient, first: bytes, second: bytes) -> str:
    r1 = client.post("/v1/documents", files={"file": ("parking.md", first)}, data={"collection": "entry"})
    assert r1.status_code == 201, r1.text
    r2 = client.put(f"/v1/documents/{r1.json()['id']}", files={"file": ("parking.md", second)})
    return _api_outcome(r2, r1.json()["id"])


def _api_outcome(r: Any, first_id: str) -> str:
    if r.status_code == 200:
        return r.json()["outcome"] if r.json()["id"] == first_id else "another document"
    if 400 <= r.status_code < 600:
        return "failed: " + reason(r.json()["detail"])
    return f"status {r.status_code}"


def via_sync(container: Any, s3: Any, first: bytes, second: bytes) -> str:
    bucket = f"ks-entry-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    source = container.sources.register(SYSTEM, name=bucket, bucket=bucket, prefix="", collection="entry", acl=None)
    sync = container.s3_sync()
    s3.put_object(Bucket=bucket, Key="parking.md", Body=first)
    assert sync.sync(source).new == 1
    s3.put_object(Bucket=bucket, Key="parking.md", Body=second)
    report = sync.sync(source)
    if report.failed:
        return "failed: " + reason(report.errors[0])
    return "replaced" if report.modified else "unchanged" if report.unchanged else "other"


def via_folder(container: Any, tmp: Path, first: bytes, second: bytes) -> str:
    folder = tmp / uuid.uuid4().hex[:8]
    folder.mkdir()
    path = folder / "parking.md"
    path.write_bytes(first)
    assert FolderIngest(container.ingest).run([path], "entry", {}).indexed == 1
    time.sleep(0.01)
    path.write_bytes(second)
    report = FolderIngest(container.ingest).run([path], "entry", {})
    if report.failed:
        return "failed: " + reason(report.errors[0])
    return "unchanged" if report.unchanged else "replaced"


SITUATIONS = {
    "unchanged": (V1, V1, "unchanged"),
    "replaced": (V1, V2, "replaced"),
    "refused": (V1, BAD, "failed: refused"),
}


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_every_entry_point_has_the_same_outcome(
    situation: str, client: TestClient, container: Any, s3: Any, tmp_path: Path
):
    first, second, expected = SITUATIONS[situation]
    outcomes = {
        "api upload": via_api(client, first, second),
        "api replace": via_put(client, first, second),
        "s3 sync": via_sync(container, s3, first, second),
        "folder ingest": via_folder(container, tmp_path, first, second),
    }
    assert outcomes == dict.fromkeys(outcomes, expected)


def test_a_transient_failure_is_the_same_everywhere(settings: Settings, embedder: Any, s3: Any, tmp_path: Path):
    """The model is down: every entry point says the document will be retried, and nothing is lost (it stays
    queued, with its original kept for the worker)."""
    container = build_container(settings, embedder=DownEmbedder(embedder))
    try:
        with TestClient(create_app(container=container)) as client:
            r = client.post("/v1/documents", files={"file": ("parking.md", V1)}, data={"collection": "entry"})
            assert r.status_code == 503, r.text
            outcomes = {"api upload": "failed: " + reason(r.json()["detail"])}
            queued = client.get(f"/v1/documents/{r.json()['document_id']}").json()
            assert queued["status"] == "queued"
        bucket = f"ks-entry-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="other.md", Body=V2)
        source = container.sources.register(SYSTEM, name=bucket, bucket=bucket, prefix="", collection="entry", acl=None)
        report = container.s3_sync().sync(source)
        outcomes["s3 sync"] = "failed: " + reason(report.errors[0]) if report.failed else "other"
        path = tmp_path / "third.md"
        path.write_bytes(b"# Canteen\n\nThe canteen serves ramen on Fridays.\n")
        folder = FolderIngest(container.ingest).run([path], "entry", {})
        outcomes["folder ingest"] = "failed: " + reason(folder.errors[0]) if folder.failed else "other"
        assert outcomes == dict.fromkeys(outcomes, "failed: transient")
        # nothing lost: each is queued with its original, for a worker (or the next run) to index
        pending = container.ingest.active_job_counts()
        assert pending["queued"] == 3
    finally:
        container.close()


@pytest.mark.process
def test_the_cli_reports_the_same_outcomes(settings: Settings, tmp_path: Path):
    env = _env(settings)
    path = tmp_path / "parking.md"

    def ingest(data: bytes) -> subprocess.CompletedProcess[str]:
        path.write_bytes(data)
        return subprocess.run(
            [str(BIN), "ingest", str(path), "--collection", "entry"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert "indexed 1" in ingest(V1).stderr
    assert "unchanged 1" in ingest(V1).stderr
    assert "indexed 1" in ingest(V2).stderr  # replaced in place
    refused = ingest(BAD)
    assert refused.returncode == 1 and "failed 1" in refused.stderr and "PDF" in refused.stderr
