"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import ContainerDep
from app.api.schemas import Health
from app.core.container import Container

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(container: ContainerDep) -> JSONResponse:
    """Readiness: the metadata store and the chunk store answer."""
    checks = await run_in_threadpool(_checks, container)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        Health(status="ok" if ok else "unavailable", checks=checks).model_dump(), status_code=200 if ok else 503
    )


def _checks(container: Container) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with container.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["metadata_store"] = "ok"
    except Exception as exc:  # report, don't raise: readiness is a status, not an error
        checks["metadata_store"] = f"error: {type(exc).__name__}"
    try:
        container.store.ping()
        checks["chunk_store"] = "ok"
    except Exception as exc:
        checks["chunk_store"] = f"error: {type(exc).__name__}"
    return checks
