"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ContainerDep
from app.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(container: ContainerDep) -> JSONResponse:
    """Readiness: the metadata store and the chunk store answer, each within KS_READY_TIMEOUT_S."""
    checks = await run_checks(
        {"metadata_store": container.ping_database, "chunk_store": container.store.ping},
        container.settings.ready_timeout_s,
    )
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        Health(status="ok" if ok else "unavailable", checks=checks).model_dump(), status_code=200 if ok else 503
    )


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
        check()
        outcome = "ok"
    except Exception as exc:  # report, don't raise: readiness is a status, not an error
        outcome = f"error: {type(exc).__name__}"
    with contextlib.suppress(RuntimeError):  # the loop closed while the check hung
        loop.call_soon_threadsafe(_settle, result, outcome)


def _settle(result: asyncio.Future[str], outcome: str) -> None:
    if not result.done():
        result.set_result(outcome)
