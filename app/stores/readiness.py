"""Readiness: can this instance serve? The metadata database answers and carries the schema this code needs,
and the chunk store answers (an OpenSearch index with unassigned replicas serves, degraded; one with an
unassigned primary does not)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from sqlalchemy import Engine, text

from app.core.errors import MigrationsPending
from app.stores.sql.migrate import SchemaGate
from app.stores.vector.base import ChunkStore


class Readiness:
    def __init__(self, engine: Engine, schema: SchemaGate, store: ChunkStore, timeout_s: float) -> None:
        self._engine, self._schema, self._store, self._timeout = engine, schema, store, timeout_s

    async def check(self) -> tuple[str, dict[str, str]]:
        """("ok" | "degraded" | "unavailable", each check's outcome); only "unavailable" means not ready."""
        checks = await run_checks(
            {"metadata_store": self._metadata_store, "chunk_store": self._store.ping}, self._timeout
        )
        if any(not (v == "ok" or v.startswith("degraded")) for v in checks.values()):
            return "unavailable", checks
        return ("degraded" if any(v != "ok" for v in checks.values()) else "ok"), checks

    def _metadata_store(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        self._schema.check()


async def run_checks(checks: dict[str, Callable[[], object]], timeout: float) -> dict[str, str]:
    """Run the checks side by side, each in its own thread; one that has not answered in time is "timeout".

    Daemon threads rather than the shared pool: a check stuck on a dead connection must neither hold a pool
    worker nor keep the process from exiting; it ends by itself when the client's own timeout fires.
    """
    loop = asyncio.get_running_loop()
    results: dict[str, asyncio.Future[str]] = {name: loop.create_future() for name in checks}
    for name, check in checks.items():
        threading.Thread(
            target=_run_check, args=(check, results[name], loop), name=f"readyz-{name}", daemon=True
        ).start()
    await asyncio.wait(results.values(), timeout=timeout)
    return {name: f.result() if f.done() else "timeout" for name, f in results.items()}


def _run_check(check: Callable[[], object], result: asyncio.Future[str], loop: asyncio.AbstractEventLoop) -> None:
    try:
        note = check()
        outcome = note if isinstance(note, str) and note else "ok"
    except MigrationsPending:
        outcome = "error: schema behind: run `knowledge-search migrate`"
    except Exception as exc:  # report, don't raise: readiness is a status, not an error
        outcome = f"error: {type(exc).__name__}"
    with contextlib.suppress(RuntimeError):  # the loop closed while the check hung
        loop.call_soon_threadsafe(_settle, result, outcome)


def _settle(result: asyncio.Future[str], outcome: str) -> None:
    if not result.done():
        result.set_result(outcome)
