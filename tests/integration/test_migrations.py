"""Migrations round trip on SQLite and Postgres, and the models match the migrated schema.

Postgres runs in a throwaway database (``ks_migrations_<random>``) created on the KS_TEST_DATABASE_URL server
and dropped afterwards, so the shared test database is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from app.core.config import Settings
from app.stores.sql import migrate
from app.stores.sql.models import Base
from app.stores.sql.session import build_engine
from tests.conftest import need_service, own_database

BIN = Path(sys.executable).parent / "knowledge-search"
MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[str]:
    server = need_service("Postgres", "KS_TEST_DATABASE_URL")
    with own_database(server, "ks_migrations") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        url = request.getfixturevalue("throwaway_postgres")
    eng = build_engine(Settings(data_dir=tmp_path), url)
    migrate.downgrade(eng, "base")  # the Postgres database is shared by this module's tests
    yield eng
    eng.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def revisions(engine: Engine) -> list[str]:
    """Every revision from the first to head."""
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def schema_diffs(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_downgrade_upgrade(engine: Engine) -> None:
    head = revisions(engine)[-1]
    assert tables(engine) == set()

    migrate.upgrade(engine)
    assert tables(engine) == MODEL_TABLES
    assert migrate.current_revision(engine) == head

    migrate.downgrade(engine, "base")
    assert tables(engine) == set()
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)
    assert tables(engine) == MODEL_TABLES
    assert migrate.current_revision(engine) == head


def test_each_revision_upgrades_and_downgrades_in_turn(engine: Engine) -> None:
    steps = revisions(engine)
    for rev in steps:
        migrate.upgrade(engine, rev)
        assert migrate.current_revision(engine) == rev
    for rev in reversed([None, *steps[:-1]]):
        migrate.downgrade(engine, rev or "base")
        assert migrate.current_revision(engine) == rev
    assert tables(engine) == set()


def test_models_match_the_migrated_schema(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert schema_diffs(engine) == []


@pytest.mark.postgres
@pytest.mark.process
def test_cli_migrate_on_postgres(throwaway_postgres: str, tmp_path: Path) -> None:
    eng = build_engine(Settings(data_dir=tmp_path), throwaway_postgres)
    migrate.downgrade(eng, "base")
    head = revisions(eng)[-1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KS_")}
    env.update(KS_DATABASE_URL=throwaway_postgres, KS_DATA_DIR=str(tmp_path / "data"))
    for _ in range(2):  # the second run finds nothing to do
        done = subprocess.run([str(BIN), "migrate"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"database at revision {head}" in done.stdout
    assert tables(eng) == MODEL_TABLES
    assert schema_diffs(eng) == []
    eng.dispose()
