"""S3 sources: sync a prefix through the API and the CLI against moto's S3 server over HTTP (a real boto3 client
found through AWS_ENDPOINT_URL_S3), on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.container import build_container
from app.core.config import Settings
from app.main import create_app
from app.stores.sql.repositories import DocumentRepository
from tests.helpers import PROBLEM

BIN = Path(sys.executable).parent / "knowledge-search"
ADMIN = "admin-secret-for-s3-tests"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
OBJECTS = {
    "docs/leave.md": b"# Leave\n\nEmployees receive 12 days of paid leave after six months of service.\n",
    "docs/parking.txt": b"Visitors park on level B2 of the north garage.\n",
    "docs/ja/在宅勤務.md": "# 在宅勤務規程\n\n在宅勤務は週3日まで認められます。\n".encode(),
    "docs/logo.png": PNG,  # not a supported type: skipped, neither scanned nor failed
    "docs/broken.pdf": b"%PDF-1.7\n garbage \x00\x01",  # fails, with its reason
    "docs/folder/": b"",  # a "folder" marker: skipped
    "elsewhere/outside.md": b"# Outside\n\nThis object is outside the prefix.\n",
}


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"ks-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=name, Key=key, Body=body)
    return name


def register(
    client: TestClient,
    bucket: str,
    prefix: str = "docs/",
    collection: str = "s3docs",
    name: str | None = None,
    headers: dict[str, str] | None = None,
    **more: Any,
) -> str:
    name = name or f"src-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "bucket": bucket, "prefix": prefix, "collection": collection, **more}
    r = client.post("/v1/sources", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return name


def run_sync(client: TestClient, name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.post(f"/v1/sources/{name}/sync", headers=headers)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "succeeded", "failed") and job["source"] == name
    deadline = time.monotonic() + 180
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"sync never finished: {job}"
        time.sleep(0.1)
        r = client.get(f"/v1/sources/{name}/syncs/{job['id']}", headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
    return job


def counts(**given: int) -> dict[str, int]:
    return {"scanned": 0, "new": 0, "modified": 0, "unchanged": 0, "deleted": 0, "failed": 0, **given}


def hits(client: TestClient, query: str, mode: str = "keyword") -> list[dict[str, Any]]:
    r = client.post("/v1/search", json={"query": query, "mode": mode, "collection": "s3docs"})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def listed(client: TestClient) -> dict[str, dict[str, Any]]:
    items = client.get("/v1/documents", params={"collection": "s3docs"}).json()["items"]
    return {d["metadata"]["s3_uri"]: d for d in items}


def test_sync_new_unchanged_then_modified_deleted_new(client: TestClient, container: Any, s3: Any, bucket: str):
    body = register(client, bucket)
    first = run_sync(client, body)
    assert first["status"] == "succeeded", first
    assert first["counts"] == counts(scanned=4, new=3, failed=1)
    assert first["error"] is None and first["finished_at"]
    [failure] = first["errors"]
    assert failure.startswith(f"s3://{bucket}/docs/broken.pdf: ") and "PDF" in failure

    docs = listed(client)
    base = f"s3://{bucket}/docs/"
    origin = "source:" + client.get(f"/v1/sources/{body}").json()["id"]
    assert set(docs) == {
        base + "leave.md",
        base + "parking.txt",
        base + "ja/在宅勤務.md",
    }  # the failed pdf left nothing
    assert all(
        d["status"] == "indexed" and d["metadata"]["source"] == "s3" and d["metadata"]["etag"] for d in docs.values()
    )
    with container.sessions() as session:
        [found] = DocumentRepository(session).with_external_id("s3docs", base + "parking.txt", origin, None)
        assert found.id == docs[base + "parking.txt"]["id"]
    assert hits(client, "where do visitors park")[0]["document_id"] == docs[base + "parking.txt"]["id"]
    assert hits(client, "在宅勤務は何日")[0]["document_id"] == docs[base + "ja/在宅勤務.md"]["id"]
    assert hits(client, "paid leave", "hybrid")[0]["metadata"]["s3_uri"] == base + "leave.md"

    second = run_sync(client, body)
    assert second["counts"] == counts(scanned=4, unchanged=3, failed=1)
    assert listed(client) == docs  # nothing re-created

    s3.put_object(Bucket=bucket, Key="docs/parking.txt", Body=b"Visitors now park on level C3 of the south garage.\n")
    s3.delete_object(Bucket=bucket, Key="docs/leave.md")
    s3.put_object(Bucket=bucket, Key="docs/canteen.md", Body=b"# Canteen\n\nThe canteen serves ramen on Fridays.\n")
    third = run_sync(client, body)
    assert third["counts"] == counts(scanned=4, new=1, modified=1, unchanged=1, deleted=1, failed=1), third
    after = listed(client)
    assert set(after) == {base + "parking.txt", base + "ja/在宅勤務.md", base + "canteen.md"}
    assert after[base + "parking.txt"]["id"] == docs[base + "parking.txt"]["id"]  # replaced in place
    assert after[base + "parking.txt"]["metadata"]["etag"] != docs[base + "parking.txt"]["metadata"]["etag"]
    gone = docs[base + "leave.md"]["id"]
    assert client.get(f"/v1/documents/{gone}").status_code == 404
    assert all(h["document_id"] != gone for h in hits(client, "paid leave after six months", "hybrid"))
    assert not hits(client, "paid leave")
    parking = hits(client, "where do visitors park")
    assert parking[0]["document_id"] == after[base + "parking.txt"]["id"] and "C3" in parking[0]["text"]
    assert not any("B2" in h["text"] for h in parking)
    assert hits(client, "ramen")[0]["document_id"] == after[base + "canteen.md"]["id"]

    s3.put_object(Bucket=bucket, Key="docs/ja/在宅勤務.md", Body=b"   ")  # a new version that cannot be indexed
    fourth = run_sync(client, body)
    assert fourth["counts"] == counts(scanned=4, unchanged=2, failed=2), fourth
    assert any(e.startswith(base + "ja/在宅勤務.md: ") and "empty" in e for e in fourth["errors"])
    assert hits(client, "在宅勤務は何日")[0]["document_id"] == docs[base + "ja/在宅勤務.md"]["id"]  # the old one stays
    assert container.ingest.inspect().clean  # no orphan chunks from the replaced or deleted documents


def test_missing_bucket_fails_the_job_with_a_clear_error(client: TestClient, s3: Any):
    missing = f"ks-missing-{uuid.uuid4().hex[:8]}"
    name = register(client, missing, prefix="")
    job = run_sync(client, name)
    assert job["status"] == "failed"
    assert missing in job["error"] and "does not exist" in job["error"]
    assert job["counts"] == counts()
    assert client.get(f"/v1/sources/{name}/syncs/nope").status_code == 404
    assert client.post("/v1/sources/nope/sync").status_code == 404


@pytest.mark.parametrize(
    "name", ["ab", "Upper-Case", "under_score", "my..bucket", "192.168.0.1", "xn--bucket", "-dash"]
)
def test_bad_bucket_name_is_422_problem(client: TestClient, name: str):
    r = client.post("/v1/sources", json={"name": "bad", "bucket": name})
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert "bucket" in r.json()["detail"]


def test_only_an_admin_chooses_what_is_synced_and_who_reads_it(settings: Settings, embedder: Any, s3: Any, bucket: str):
    """Issue 12, item 1: a write (or sync) key cannot point the service's credentials at a bucket, nor choose the
    access list or the collection of what comes out of it."""
    container = build_container(settings.model_copy(update={"admin_key": SecretStr(ADMIN)}), embedder=embedder)
    try:
        with TestClient(create_app(container=container)) as client:
            admin = {"Authorization": f"Bearer {ADMIN}"}

            def key(**body: Any) -> dict[str, str]:
                r = client.post("/v1/keys", json={"name": "k", **body}, headers=admin)
                assert r.status_code == 201, r.text
                return {"Authorization": f"Bearer {r.json()['key']}"}

            eve = key(scopes=["read", "write"], principals=["user:eve"])
            syncer = key(scopes=["sync"])
            elsewhere = key(scopes=["sync", "read"], collections=["other"])
            hr = key(scopes=["read"], principals=["group:hr"])
            loot = {"name": "loot", "bucket": bucket, "prefix": "", "collection": "eve-loot", "acl": ["user:eve"]}
            for headers in (eve, syncer):
                r = client.post("/v1/sources", json=loot, headers=headers)
                assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM), r.text
            # the sync call of old, which took a bucket from its caller, is gone: "s3" is no registered source
            old = {"bucket": bucket, "prefix": "", "collection": "eve-loot", "acl": ["user:eve"]}
            assert client.post("/v1/sources/s3/sync", json=old, headers=syncer).status_code == 404
            assert client.post("/v1/sources", json=loot).status_code == 401

            name = register(client, bucket, acl=["group:hr"], headers=admin)
            assert client.post(f"/v1/sources/{name}/sync", headers=eve).status_code == 403  # no sync scope
            assert client.post(f"/v1/sources/{name}/sync", headers=elsewhere).status_code == 404  # not its collection
            assert client.get("/v1/sources", headers=elsewhere).json()["items"] == []
            job = run_sync(client, name, headers=syncer)
            assert job["counts"]["new"] == 3
            assert client.get(f"/v1/sources/{name}/syncs/{job['id']}", headers=elsewhere).status_code == 404
            docs = client.get("/v1/documents", params={"collection": "s3docs"}, headers=admin).json()["items"]
            assert {tuple(d["acl"]) for d in docs} == {("group:hr",)}  # the admin's access list, not the caller's
            seen = client.post("/v1/search", json={"query": "visitors park", "mode": "keyword"}, headers=eve).json()
            assert seen["results"] == []
            found = client.post("/v1/search", json={"query": "visitors park", "mode": "keyword"}, headers=hr).json()
            assert found["results"] and found["results"][0]["collection"] == "s3docs"
            # what a source made is the source's: a writer cannot re-label or delete it through the API
            doc_id = docs[0]["id"]
            writer_hr = key(scopes=["read", "write"], principals=["group:hr"])
            assert client.patch(f"/v1/documents/{doc_id}", json={"acl": None}, headers=writer_hr).status_code == 403
            assert client.delete(f"/v1/documents/{doc_id}", headers=writer_hr).status_code == 403

            events = client.get("/v1/audit", params={"action": "sync"}, headers=admin).json()["items"]
            assert [e["status"] for e in events] == [202, 404, 403, 404]  # newest first
            assert events[0]["target_ids"][1] == name
            refused = client.get("/v1/audit", params={"action": "source.create"}, headers=admin).json()["items"]
            assert [e["status"] for e in refused] == [201, 401, 403, 403]
    finally:
        container.close()


def test_a_planted_external_id_never_captures_a_sync(client: TestClient, s3: Any, bucket: str):
    """Issue 12, item 2: s3:// ids belong to sources; a sync only ever sees documents it made."""
    planted = {"text": "placeholder", "external_id": f"s3://{bucket}/docs/parking.txt", "acl": ["user:eve"]}
    r = client.post("/v1/documents", json={**planted, "collection": "s3docs"})
    assert r.status_code == 422 and "belong to the sources" in r.json()["detail"]
    # an id outside the reserved schemes is the client's own, and the sync leaves such a document alone
    own = client.post("/v1/documents", json={"text": "placeholder", "collection": "s3docs", "external_id": "parking"})
    assert own.status_code == 201
    job = run_sync(client, register(client, bucket, acl=["group:hr"]))
    assert job["counts"]["new"] == 3 and job["counts"]["modified"] == 0
    mine = client.get(f"/v1/documents/{own.json()['id']}").json()
    assert mine["acl"] is None and mine["chunk_count"] == 1  # untouched


@pytest.mark.process
def test_cli_ingest_s3_prints_the_counts(settings: Settings, aws_env: dict[str, str], bucket: str, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KS_", "AWS_"))}
    env.update(
        aws_env,
        KS_DATA_DIR=str(settings.data_dir),
        KS_DATABASE_URL=settings.resolved_database_url,
        KS_VECTOR_STORE=settings.vector_store,
        KS_OPENSEARCH_URL=settings.opensearch_url,
        KS_OPENSEARCH_INDEX=settings.opensearch_index,
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)

    uri = f"s3://{bucket}/docs/"
    first = run("ingest", uri, "--collection", "s3cli")  # registers a source for exactly this place
    assert first.returncode == 1, first.stderr  # one object failed
    assert "scanned 4, new 3, modified 0, unchanged 0, deleted 0, failed 1" in first.stdout, first.stdout
    assert "docs/broken.pdf" in first.stderr
    again = run("ingest", uri, "--collection", "s3cli")
    assert "scanned 4, new 0, modified 0, unchanged 3, deleted 0, failed 1" in again.stdout, again.stdout
    found = run("search", "where do visitors park", "--top-k", "1", "--collection", "s3cli")
    assert found.returncode == 0 and "B2" in found.stdout
    listed = run("sources", "list")
    assert listed.returncode == 0 and bucket in listed.stdout and "s3cli" in listed.stdout

    missing = run("ingest", f"s3://ks-missing-{uuid.uuid4().hex[:8]}/x", "--collection", "s3cli")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert run("ingest", "s3://Bad_Bucket/x").returncode == 2
    nowhere = run("ingest", str(tmp_path / "nowhere"))
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr
