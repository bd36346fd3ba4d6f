"""Health endpoints, the admin key, and the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.container import build_container
from app.main import create_app
from tests.helpers import PROBLEM


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"metadata_store": "ok", "chunk_store": "ok"}


def test_ready_is_503_when_a_store_is_gone(client, container, settings):
    if settings.vector_store == "opensearch":
        from app.stores.vector.opensearch import OpenSearchChunkStore

        # an OpenSearch that does not answer
        container.store = OpenSearchChunkStore.from_settings(
            settings.model_copy(update={"opensearch_url": "http://127.0.0.1:9", "opensearch_timeout_s": 1.0})
        )
    else:
        container.store.close()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["chunk_store"].startswith("error")


@pytest.fixture
def keyed_client(settings, embedder):
    keyed = settings.model_copy(update={"admin_key": SecretStr("s3cret-admin-key")})
    c = build_container(keyed, embedder=embedder)
    with TestClient(create_app(container=c), base_url="http://localhost") as tc:
        yield tc
    c.close()


ROUTES = [
    ("get", "/v1/documents", None),
    ("get", "/v1/documents/abc", None),
    ("get", "/v1/documents/abc/chunks", None),
    ("delete", "/v1/documents/abc", None),
    ("post", "/v1/documents", {"text": "hello"}),
    ("post", "/v1/search", {"query": "hello"}),
    ("post", "/v1/chat", {"message": "hello"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_admin_key_is_required_when_configured(keyed_client, method, path, body):
    kwargs = {"json": body} if body else {}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-admin-key"}):
        r = getattr(keyed_client, method)(path, headers=headers, **kwargs)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        assert "s3cret" not in r.text
    ok = getattr(keyed_client, method)(path, headers={"Authorization": "Bearer s3cret-admin-key"}, **kwargs)
    assert ok.status_code in (200, 201, 404), ok.text


def test_health_needs_no_key(keyed_client):
    assert keyed_client.get("/healthz").status_code == 200
    assert keyed_client.get("/readyz").status_code == 200


def test_openapi_documents_the_contract(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/documents", "/v1/search", "/v1/chat", "/healthz", "/readyz"} <= set(paths)
    upload = paths["/v1/documents"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(upload["requestBody"]["content"])
    assert "application/problem+json" in upload["responses"]["422"]["content"]
    assert client.get("/docs").status_code == 200


def test_a_database_that_does_not_answer_is_a_503_that_says_so(tmp_path, embedder):
    """Not a 500: every request says the metadata database is away, which one (never its password), and to retry."""
    from pydantic import SecretStr

    from app.core.config import Settings

    settings = Settings(
        data_dir=tmp_path / "d",
        database_url="postgresql+psycopg://ks:s3cret@127.0.0.1:9/nodb",  # nothing listens on port 9
        admin_key=SecretStr("k"),
        ingest_workers=0,
        db_connect_timeout_s=2,
    )
    c = build_container(settings, embedder=embedder)
    try:
        headers = {"Authorization": "Bearer k"}
        with TestClient(create_app(container=c), base_url="http://localhost", headers=headers) as client:
            for r in (client.get("/v1/documents"), client.post("/v1/search", json={"query": "leave"})):
                assert r.status_code == 503 and r.headers["content-type"] == PROBLEM, r.text
                assert "127.0.0.1:9" in r.json()["detail"] and "s3cret" not in r.text and r.headers["retry-after"]
            assert client.get("/readyz").status_code == 503
    finally:
        c.close()


def test_without_any_key_only_loopback_names_are_served(client):
    """The development mode (no key at all) answers to localhost only: a page that rebinds its own DNS name to
    127.0.0.1 gets 403, not the documents."""
    assert client.get("/v1/documents", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/v1/documents", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    r = client.get("/v1/documents", headers={"Host": "evil.example:8000"})
    assert r.status_code == 403 and "localhost" in r.json()["detail"]
