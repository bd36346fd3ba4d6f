"""Engine and session factory, built once at start-up from settings."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.errors import StoreUnavailable


def build_engine(settings: Settings, url: str | None = None) -> Engine:
    url = url or settings.resolved_database_url
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

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
        )
    )


def _answering_503_when_down(engine: Engine) -> Engine:
    """A database that cannot be reached (refused, timed out, dropped, statement timeout, locked) is a store that is
    unavailable: every caller gets a 503 that says so, never a 500. Errors of the statement itself still raise."""

    @event.listens_for(engine, "handle_error")
    def _unavailable(ctx: ExceptionContext) -> None:
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
