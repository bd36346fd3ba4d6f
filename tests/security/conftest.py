"""The attacker's view: a real `knowledge-search serve` process per backend, real keys over HTTP.

One server per module and backend (starting one costs seconds); each test makes its own keys and collections,
so tests never see each other's documents.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from tests.conftest import _drop_indices, _truncate
from tests.integration.test_process import Server

ADMIN = "admin-key-of-the-security-tests"


@pytest.fixture(scope="module", params=["embedded", "production"])
def server_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    base = Settings(data_dir=tmp_path_factory.mktemp("security") / "data", admin_key=None, ingest_workers=1)
    if request.param == "embedded":
        yield base
        return
    pg = request.getfixturevalue("migrated_postgres")
    os_url = request.getfixturevalue("opensearch_url")
    index = f"ks-sec-{uuid.uuid4().hex[:10]}"
    _truncate(pg)
    yield base.model_copy(
        update={"database_url": pg, "vector_store": "opensearch", "opensearch_url": os_url, "opensearch_index": index}
    )
    _drop_indices(os_url, index)


def start_server(settings: Settings, **env: str) -> Server:
    """A real `serve` process on a migrated database (Postgres is migrated by `knowledge-search migrate`)."""
    from app.stores.sql import migrate
    from app.stores.sql.session import build_engine

    if not settings.is_sqlite:
        engine = build_engine(settings)
        migrate.upgrade(engine)
        engine.dispose()
    return Server(settings, **env)


@pytest.fixture(scope="module")
def server(server_settings: Settings) -> Iterator[Server]:
    s = start_server(server_settings, KS_ADMIN_KEY=ADMIN, KS_RATE_LIMIT_PER_MINUTE="100000")
    yield s
    s.stop()


class Api:
    """An HTTP client holding one key (or none), as a client app would."""

    def __init__(self, base_url: str, key: str | None, **headers: str) -> None:
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=120)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


@pytest.fixture(scope="module")
def admin(server: Server) -> Api:
    return Api(server.url, ADMIN)


@pytest.fixture
def space() -> str:
    """A collection of this test's own."""
    return f"c{uuid.uuid4().hex[:10]}"


def new_key(admin: Api, server: Server, **body: Any) -> Api:
    r = admin.post("/v1/keys", json={"name": body.pop("name", "k"), **body})
    assert r.status_code == 201, r.text
    return Api(server.url, r.json()["key"])


def upload(api: Api, text: str, collection: str, **fields: Any) -> httpx.Response:
    return api.post("/v1/documents", json={"text": text, "collection": collection, **fields})


def texts(api: Api, query: str, collection: str) -> list[str]:
    r = api.post("/v1/search", json={"query": query, "collection": collection, "mode": "keyword", "top_k": 50})
    assert r.status_code == 200, r.text
    return [h["text"] for h in r.json()["results"]]


def data_dir(server: Server) -> Path:
    return server.log.parent / "data"
