"""A service started on a Postgres database that `knowledge-search migrate` has not brought up to date: /readyz and
every API call answer 503 with a problem that names the command (never 500), and the service becomes ready by
itself once the migration ran."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from app.container import build_container
from app.core.config import Settings
from app.main import create_app
from app.stores.sql import migrate

pytestmark = pytest.mark.postgres


CALLS = [
    ("GET", "/v1/documents", None),
    ("POST", "/v1/documents", {"text": "The office closes at 22:00."}),
    ("POST", "/v1/search", {"query": "office hours"}),
    ("POST", "/v1/chat", {"message": "When does the office close?"}),
    ("GET", "/v1/jobs", None),
    ("GET", "/v1/audit", None),
    ("POST", "/v1/keys", {"name": "portal", "scopes": ["read"]}),
]


def _assert_names_migrate(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, (response.request.url, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["title"] == "Database not migrated"
    assert "knowledge-search migrate" in problem["detail"]
    assert response.headers.get("retry-after")


def test_api_answers_503_naming_migrate_until_migrated(empty_database: str, tmp_path: Path, embedder):  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "data", database_url=empty_database, ingest_workers=1)
    container = build_container(settings, embedder=embedder)
    with TestClient(create_app(container=container, close_container=True), base_url="http://localhost") as client:
        assert client.get("/healthz").status_code == 200  # alive: the process itself is fine
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "knowledge-search migrate" in ready.json()["checks"]["metadata_store"]
        for method, path, body in CALLS:
            _assert_names_migrate(client.request(method, path, json=body))
        # an older schema (the first revision only) is behind too, and says which revision it is at
        engine = create_engine(empty_database)
        first = migrate.alembic_config(engine)
        from alembic.script import ScriptDirectory

        base = next(r.revision for r in ScriptDirectory.from_config(first).walk_revisions() if r.down_revision is None)
        migrate.upgrade(engine, base)
        time.sleep(2.1)  # the gate asks the database again at most every 2 s
        behind = client.get("/v1/documents")
        _assert_names_migrate(behind)
        assert base in behind.json()["detail"]

        migrate.upgrade(engine)
        engine.dispose()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the service did not become ready after the migration"
            time.sleep(0.3)
        # now everything works, the queued-ingest worker included (it waited for the schema)
        doc = client.post("/v1/documents?wait=false", json={"text": "The office closes at 22:00 on Fridays."})
        assert doc.status_code == 202, doc.text
        deadline = time.monotonic() + 60
        while client.get(f"/v1/documents/{doc.json()['id']}").json()["status"] != "indexed":
            assert time.monotonic() < deadline, "the worker never ran the queued job"
            time.sleep(0.3)
        assert client.post("/v1/search", json={"query": "office closes"}).json()["results"]
