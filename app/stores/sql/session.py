"""Engine and session factory, built once at start-up from settings."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.errors import BadInput, StoreUnavailable


def build_engine(settings: Settings, url: str | None = None) -> Engine:
    url = url or settings.resolved_database_url
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, json_serializer=_json_without_nul
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return _answering_503_when_down(engine)
    connect_args = {}
    if url.startswith("postgresql"):
        connect_args = {
            "connect_timeout": settings.db_connect_timeout_s,
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
        }
    return _answering_503_when_down(
        create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_s,
            pool_pre_ping=True,
            connect_args=connect_args,
            json_serializer=_json_without_nul,
        )
    )


NUL_REFUSED = (
    "text may not contain the NUL character (U+0000): it means nothing in text and the metadata database "
    "cannot store it; remove it and send again"
)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _json_without_nul(value: Any) -> str:
    if _has_nul(value):
        raise BadInput(NUL_REFUSED)
    return json.dumps(value)


def _refusing_nul(engine: Engine) -> None:
    """Postgres refuses a NUL in text (and in JSON) with an error of its own; SQLite stores it. Both refuse it here,
    before the statement is sent, as a 400 that says what to do: the same answer on both backends, and nothing
    written (the transaction is rolled back). Titles, names, external ids, metadata, prefixes, messages."""

    @event.listens_for(engine, "before_cursor_execute")
    def _no_nul(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        rows: Iterable[Any] = parameters if executemany else [parameters]
        for row in rows:
            values = row.values() if isinstance(row, dict) else row or ()
            if any(isinstance(v, str) and "\x00" in v for v in values):
                raise BadInput(NUL_REFUSED)


def _answering_503_when_down(engine: Engine) -> Engine:
    """A database that cannot be reached (refused, timed out, dropped, statement timeout, locked) is a store that is
    unavailable: every caller gets a 503 that says so, never a 500. Errors of the statement itself still raise."""

    _refusing_nul(engine)

    @event.listens_for(engine, "handle_error")
    def _unavailable(ctx: ExceptionContext) -> None:
        if isinstance(ctx.original_exception, BadInput):  # ours, from a JSON value's serializer: not wrapped
            raise ctx.original_exception
        if ctx.is_disconnect or isinstance(ctx.sqlalchemy_exception, OperationalError | InterfaceError):
            where = engine.url.render_as_string(hide_password=True)
            raise StoreUnavailable(
                f"the metadata database at {where} did not answer ({type(ctx.original_exception).__name__}): "
                "check that it runs and KS_DATABASE_URL points at it, then retry",
                headers={"Retry-After": "5"},
            ) from ctx.original_exception

    return engine


def build_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
