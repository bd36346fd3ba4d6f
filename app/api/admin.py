"""Administration: API keys, collections' settings and the audit trail (admin scope)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.api.deps import CallerDep, ContainerDep, IdPath
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import (
    COLLECTION_PATTERN,
    AuditPage,
    AuditRead,
    CollectionRead,
    CollectionSettings,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyRead,
)
from app.core.patterns import ACTION_PATTERN
from app.core.states import Scope

if TYPE_CHECKING:
    from app.stores.sql.models import ApiKey

router = APIRouter(prefix="/v1", tags=["admin"], responses=PROBLEM_RESPONSES)
COLLECTION_PATH = Path(pattern=COLLECTION_PATTERN)


def key_read(key: ApiKey) -> KeyRead:
    return KeyRead.model_validate(key, from_attributes=True)


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def post_key(body: KeyCreate, container: ContainerDep, caller: CallerDep) -> KeyCreated:
    """Create an API key; the secret is in this reply only."""
    caller.require(Scope.ADMIN)
    with container.audit.action(caller, "key.create") as audit:
        new = container.keys.create(body.name, list(body.scopes), body.principals, body.collections)
        audit.targets, audit.status = [new.key.id], 201
    return KeyCreated(key=new.secret, **key_read(new.key).model_dump())


@router.get("/keys", response_model=KeyList)
def list_keys(container: ContainerDep, caller: CallerDep) -> KeyList:
    """List API keys (never their secrets)."""
    caller.require(Scope.ADMIN)
    return KeyList(items=[key_read(k) for k in container.keys.all()])


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def revoke_key(key_id: IdPath, container: ContainerDep, caller: CallerDep) -> Response:
    """Revoke a key: the next request with it gets 401."""
    caller.require(Scope.ADMIN)
    with container.audit.action(caller, "key.revoke", [key_id]) as audit:
        container.keys.revoke(key_id)
        audit.status = 204
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/collections/{name}", response_model=CollectionRead)
def put_collection(
    name: Annotated[str, COLLECTION_PATH], body: CollectionSettings, container: ContainerDep, caller: CallerDep
) -> CollectionRead:
    """Create a collection or change its settings (PII redaction applies to documents ingested afterwards)."""
    caller.require(Scope.ADMIN)
    with container.audit.action(caller, "collection.update", [name]):
        name, redact = container.ingest.configure_collection(name, redact_pii=body.redact_pii)
        return CollectionRead(name=name, redact_pii=redact)


@router.get("/audit", response_model=AuditPage)
def get_audit(
    container: ContainerDep,
    caller: CallerDep,
    since: datetime | None = None,
    action: Annotated[str | None, Query(pattern=ACTION_PATTERN, examples=["key.create"])] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The audit trail, newest first: who did what to which ids, from where, and the status it ended with."""
    caller.require(Scope.ADMIN)
    events = container.audit.query(since=since, action=action, limit=limit)
    return AuditPage(items=[AuditRead.model_validate(e, from_attributes=True) for e in events])
