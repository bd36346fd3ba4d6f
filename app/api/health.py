"""Liveness and readiness."""

from __future__ import annotations

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
    """Readiness: the metadata store answers with the schema this version needs (else 503 naming
    `knowledge-search migrate`) and the chunk store answers, each within KS_READY_TIMEOUT_S. "degraded" (200):
    serving with less redundancy than configured, e.g. an OpenSearch node is down and replicas are missing."""
    status, checks = await container.readiness.check()
    return JSONResponse(
        Health(status=status, checks=checks).model_dump(), status_code=503 if status == "unavailable" else 200
    )
