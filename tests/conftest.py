"""Shared fixtures.

Every API test runs on both backends: ``embedded`` (SQLite + embedded chunk store in a temp dir) and
``production`` (a real Postgres + a real OpenSearch, started by ``scripts/services up``). Without those
services the production runs are skipped, unless KS_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.config import Settings

REQUIRE_SERVICES = os.environ.get("KS_REQUIRE_SERVICES") == "1"
# Tests build their own settings: the service's own KS_ variables (e.g. the KS_DATABASE_URL that
# `scripts/services up` exports) must not leak into them. Only the test services' addresses stay.
_KEEP = {
    "KS_TEST_DATABASE_URL",
    "KS_OPENSEARCH_URL",
    "KS_REQUIRE_SERVICES",
    # tests/deploy: the image to test (scripts/container test has just built it), the cluster's ports and state
    "KS_IMAGE",
    "KS_IMAGE_BUILT",
    "KS_TEST_CLUSTER_PORT",
    "KS_TEST_CLUSTER_DIR",
}
for _name in [n for n in os.environ if n.startswith("KS_") and n not in _KEEP]:
    del os.environ[_name]
SAMPLES = Path(__file__).resolve().parent.parent / "app" / "samples"


_SECONDS_BY_FILE: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SECONDS_BY_FILE[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Where the run's time went, by test file (setup included: image builds, clusters, servers)."""
    if not _SECONDS_BY_FILE:
        return
    terminalreporter.section("time by test file (slowest 15)")
    for path, seconds in sorted(_SECONDS_BY_FILE.items(), key=lambda kv: -kv[1])[:15]:
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}")


def need_service(name: str, env: str) -> str:
    """The service's URL from the environment; skip (or fail under KS_REQUIRE_SERVICES=1) without it."""
    value = os.environ.get(env)
    if value:
        return value
    message = f'{name} is not configured ({env} unset): run `eval "$(scripts/services up)"` first'
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def embedder():
    """One real multilingual-e5-small for the whole run (it loads in about a second)."""
    from app.providers.local import E5Embedder

    return E5Embedder()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return need_service("Postgres", "KS_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    return need_service("OpenSearch", "KS_OPENSEARCH_URL")


@contextlib.contextmanager
def own_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """An empty database of the caller's own (so concurrent runs never meet), dropped at the end; yields its URL."""
    from sqlalchemy import create_engine, make_url, text

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> Iterator[str]:
    """A database of this test run's own, migrated once, dropped at the end."""
    from sqlalchemy import create_engine

    from app.stores.sql import migrate

    with own_database(postgres_url, "ks_test") as url:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """An empty database of this test's own (not migrated), dropped at the end."""
    with own_database(postgres_url, "ks_empty") as url:
        yield url


def _truncate(url: str) -> None:
    from sqlalchemy import create_engine, text

    from app.stores.sql.models import Base

    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["embedded", "production"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings for an isolated service: its own data dir, its own Postgres rows and OpenSearch index."""
    base = {"data_dir": tmp_path / "data", "admin_key": None, "ingest_workers": 0}
    if backend == "embedded":
        yield Settings(**base)
        return
    pg = request.getfixturevalue("migrated_postgres")
    os_url = request.getfixturevalue("opensearch_url")
    index = f"ks-test-{uuid.uuid4().hex[:10]}"
    _truncate(pg)
    yield Settings(**base, database_url=pg, vector_store="opensearch", opensearch_url=os_url, opensearch_index=index)
    _drop_indices(os_url, index)


def _drop_indices(url: str, index: str) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.delete(f"{url.rstrip('/')}/{index}*", timeout=30)


@pytest.fixture
def container(settings: Settings, embedder):  # type: ignore[no-untyped-def]
    from app.container import build_container

    c = build_container(settings, embedder=embedder)
    yield c
    c.close()


@pytest.fixture
def client(container):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(container=container), base_url="http://localhost") as tc:
        yield tc
