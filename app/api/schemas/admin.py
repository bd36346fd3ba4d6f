"""Administration: API keys, collection settings, the audit trail."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.schemas.common import CollectionName, Principal, aware
from app.core.states import Scope


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
    scopes: list[Scope] = Field(
        ...,
        min_length=1,
        description="read: search, chat, read documents; write: upload, replace, change, delete documents; sync: "
        "start syncs of registered sources; admin: everything; impersonate: act for an end user (X-On-Behalf-Of).",
    )
    principals: list[Principal] = Field(
        default_factory=list, max_length=100, description="Whose documents the key may read."
    )
    collections: list[CollectionName] | None = Field(
        None, max_length=100, description="Limit the key to these collections; null: every collection."
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

    _aware = field_validator("created_at", "revoked_at")(lambda v: aware(v) if v else v)


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
    detail: str | None = Field(None, description="Why it failed, for failures.")
    client_addr: str | None = Field(None, description="The client's address (through trusted proxies).")
    request_id: str | None = Field(None, description="The request's X-Request-ID.")

    _aware = field_validator("at")(aware)
    _targets = field_validator("target_ids", mode="before")(lambda v: v or [])


class AuditPage(BaseModel):
    items: list[AuditRead]
