"""Apply Alembic migrations programmatically (service start-up in embedded mode, and `knowledge-search migrate`)."""

from __future__ import annotations

import threading
import time
from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.core.errors import AppError, MigrationsPending, StoreUnavailable


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("migrations")))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_revisions(engine: Engine) -> tuple[set[str], set[str], set[str]]:
    """(the database's revisions, the heads this code's migrations end at, every revision this code knows)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current, set(script.get_heads()), known


class SchemaGate:
    """Whether the database carries the schema this code needs, so that a service started before
    `knowledge-search migrate` answers 503 naming the command instead of failing every request with a missing
    table. Once the schema is current the answer is kept (migrations only move forward under a running
    process); until then the database is asked again at most every ``interval`` seconds, so the service
    becomes ready by itself when the migration finishes.

    A database *ahead* of this code (a newer release migrated it: a rolling update, or a rollback of the code)
    counts as current: migrations here add to the schema, so older code keeps working on a newer one.
    """

    def __init__(self, engine: Engine, *, interval: float = 2.0) -> None:
        self._engine = engine
        self._interval = interval
        self._current = False
        self._checked_at = 0.0
        self._problem: str | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise MigrationsPending while the schema is behind (StoreUnavailable when the database is away)."""
        if self._current:
            return
        with self._lock:
            if not self._current and time.monotonic() - self._checked_at >= self._interval:
                self._problem = self._look()
                self._checked_at = time.monotonic()
                self._current = self._problem is None
        if self._problem is not None:
            raise MigrationsPending(self._problem, headers={"Retry-After": "10"})

    def wait(self, stop: threading.Event, poll: float = 2.0) -> bool:
        """Block until the schema is current (True) or ``stop`` is set (False); for background workers."""
        while not stop.is_set():
            try:
                self.check()
                return True
            except AppError:
                stop.wait(poll)
            except Exception:  # the database is not reachable yet
                stop.wait(poll)
        return False

    def _look(self) -> str | None:
        try:
            current, heads, known = schema_revisions(self._engine)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"the metadata database did not answer ({type(exc).__name__}); check KS_DATABASE_URL and that the "
                "database is up"
            ) from exc
        if current == heads or (current and not current <= known):
            return None
        at = ", ".join(sorted(current)) if current else "none (an empty database)"
        return (
            f"the database schema is at revision {at}, this version of knowledge-search needs "
            f"{', '.join(sorted(heads))}: run `knowledge-search migrate` against this database, then retry"
        )
