"""API keys: create (the secret is returned once and stored only as its hash), list, revoke. The API and the
CLI both come here."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.access.caller import hash_secret, new_secret
from app.core.errors import BadInput, NotFound
from app.core.patterns import COLLECTION_RULE, PRINCIPAL_RULE, is_collection, is_principal
from app.core.states import Scope
from app.stores.sql.models import ApiKey, utcnow
from app.stores.sql.repositories import ApiKeyRepository


@dataclass(slots=True)
class NewKey:
    key: ApiKey
    secret: str


class KeyService:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, name: str, scopes: list[str], principals: list[str], collections: list[str] | None) -> NewKey:
        if not scopes or any(s not in Scope.__members__.values() for s in scopes):
            raise BadInput(f"scopes are some of {', '.join(Scope)}")
        if not all(is_principal(p) for p in principals):
            raise BadInput(PRINCIPAL_RULE)
        if collections is not None and not all(is_collection(c) for c in collections):
            raise BadInput(COLLECTION_RULE)
        secret = new_secret()
        with self._sessions.begin() as session:
            key = ApiKeyRepository(session).add(
                ApiKey(
                    name=name,
                    key_hash=hash_secret(secret),
                    prefix=secret[:10],
                    scopes=list(dict.fromkeys(scopes)),
                    principals=list(dict.fromkeys(principals)),
                    collections=list(dict.fromkeys(collections)) if collections is not None else None,
                )
            )
        return NewKey(key, secret)

    def all(self) -> list[ApiKey]:
        with self._sessions() as session:
            return ApiKeyRepository(session).all()

    def revoke(self, key_id: str) -> ApiKey:
        with self._sessions.begin() as session:
            key = ApiKeyRepository(session).get(key_id)
            if key is None:
                raise NotFound(f"API key {key_id} does not exist")
            key.revoked_at = key.revoked_at or utcnow()
            return key
