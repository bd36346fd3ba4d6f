"""Administration: API keys, collections' settings and the audit trail (admin scope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from app.access.caller import hash_secret, new_secret
from app.api.deps import CallerDep, ContainerDep
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import COLLECTION_PATTERN, Principal, _aware
from app.core.errors import NotFound
from app.stores.sql.models import ApiKey, utcnow
from app.stores.sql.repositories import ApiKeyRepository, AuditRepository, CollectionRepository

router = APIRouter(prefix="/v1", tags=["admin"], responses=PROBLEM_RESPONSES)
Scope = Literal["read", "write", "admin", "impersonate"]
COLLECTION_PATH = Path(pattern=COLLECTION_PATTERN)


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "hr-portal",
                    "scopes": ["read", "impersonate"],
                    "principals": ["group:hr"],
                    "collections": ["hr"],
                }
            ]
        },
    )

    name: str = Field(..., min_length=1, max_length=128)
    scopes: list[Scope] = Field(..., min_length=1)
    principals: list[Principal] = Field(default_factory=list, description="Whose documents the key may read.")
    collections: list[Annotated[str, Field(pattern=COLLECTION_PATTERN)]] | None = Field(
        None, description="Limit the key to these collections; null: every collection."
    )


class KeyRead(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it.")
    scopes: list[str]
    principals: list[str]
    collections: list[str] | None
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyRead):
    key: str = Field(description="The secret. It is shown only once: store it now.")


class KeyList(BaseModel):
    items: list[KeyRead]


class CollectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    redact_pii: bool = Field(description="Remove e-mail addresses, phone, card and My Number numbers at ingest.")


class CollectionRead(CollectionSettings):
    name: str


class AuditRead(BaseModel):
    id: int
    at: datetime
    key_id: str | None
    principals: list[str] | None
    action: str
    target_ids: list[str]
    status: int


class AuditPage(BaseModel):
    items: list[AuditRead]


def create_key(container, body: KeyCreate) -> KeyCreated:  # type: ignore[no-untyped-def]
    """Shared by the API and the CLI."""
    secret = new_secret()
    with container.sessions.begin() as session:
        key = ApiKeyRepository(session).add(
            ApiKey(
                name=body.name,
                key_hash=hash_secret(secret),
                prefix=secret[:10],
                scopes=list(dict.fromkeys(body.scopes)),
                principals=list(dict.fromkeys(body.principals)),
                collections=body.collections,
            )
        )
        return KeyCreated(key=secret, **_key_read(key).model_dump())


def _key_read(key: ApiKey) -> KeyRead:
    return KeyRead(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=key.scopes,
        principals=key.principals,
        collections=key.collections,
        created_at=_aware(key.created_at),
        revoked_at=_aware(key.revoked_at) if key.revoked_at else None,
    )


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
def post_key(body: KeyCreate, container: ContainerDep, caller: CallerDep) -> KeyCreated:
    """Create an API key; the secret is in this reply only."""
    caller.require("admin")
    with container.audit.action(caller, "key.create") as audit:
        created = create_key(container, body)
        audit.targets, audit.status = [created.id], 201
    return created


@router.get("/keys", response_model=KeyList)
def list_keys(container: ContainerDep, caller: CallerDep) -> KeyList:
    """List API keys (never their secrets)."""
    caller.require("admin")
    with container.sessions() as session:
        return KeyList(items=[_key_read(k) for k in ApiKeyRepository(session).all()])


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def revoke_key(key_id: str, container: ContainerDep, caller: CallerDep) -> Response:
    """Revoke a key: the next request with it gets 401."""
    caller.require("admin")
    with container.audit.action(caller, "key.revoke", [key_id]) as audit:
        revoke(container, key_id)
        audit.status = 204
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def revoke(container, key_id: str) -> None:  # type: ignore[no-untyped-def]
    with container.sessions.begin() as session:
        key = ApiKeyRepository(session).get(key_id)
        if key is None:
            raise NotFound(f"API key {key_id} does not exist")
        key.revoked_at = key.revoked_at or utcnow()


@router.put("/collections/{name}", response_model=CollectionRead)
def put_collection(
    name: Annotated[str, COLLECTION_PATH], body: CollectionSettings, container: ContainerDep, caller: CallerDep
) -> CollectionRead:
    """Create a collection or change its settings (PII redaction applies to documents ingested afterwards)."""
    caller.require("admin")
    with container.audit.action(caller, "collection.update", [name]):
        for attempt in (1, 2):
            try:
                with container.sessions.begin() as session:
                    coll = CollectionRepository(session).ensure(name)
                    coll.redact_pii = body.redact_pii
                    return CollectionRead(name=coll.name, redact_pii=coll.redact_pii)
            except IntegrityError:  # an upload created the collection at the same moment: it exists now
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


@router.get("/audit", response_model=AuditPage)
def get_audit(
    container: ContainerDep,
    caller: CallerDep,
    since: datetime | None = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The audit trail, newest first: who did what to which ids, and the status it ended with."""
    caller.require("admin")
    with container.sessions() as session:
        events = AuditRepository(session).query(since=since, action=action, limit=limit)
        return AuditPage(
            items=[
                AuditRead(
                    id=e.id,
                    at=_aware(e.at),
                    key_id=e.key_id,
                    principals=e.principals,
                    action=e.action,
                    target_ids=e.target_ids or [],
                    status=e.status,
                )
                for e in events
            ]
        )
