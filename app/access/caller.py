"""Who is calling, and what they may see.

A request authenticates with ``Authorization: Bearer <key>``: the admin key (KS_ADMIN_KEY) or an API key
created with ``POST /v1/keys`` / ``knowledge-search keys create`` (stored only as a sha256 hash). The
resulting ``Caller`` carries scopes, principals and allowed collections; stores receive its principals and
collections as filters, so access control happens inside every query.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.errors import Forbidden, NotFound, Unauthorized
from app.core.patterns import PRINCIPAL_RULE, is_principal
from app.core.states import Scope
from app.stores.sql.repositories import ApiKeyRepository
from app.stores.vector.base import ChunkFilter

ALL_SCOPES = frozenset(Scope)
_BEARER = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str | None
    scopes: frozenset[str]
    # None: unrestricted (sees every document). Otherwise the principals whose documents it may read.
    principals: list[str] | None = None
    # None: every collection.
    collections: list[str] | None = None

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.is_admin and scope not in self.scopes:
            raise Forbidden(f"this key lacks the '{scope}' scope")

    def check_read(self, collection: str | None) -> None:
        """Reading a collection outside the key's reach looks exactly like reading one that does not exist."""
        if collection is not None and not self.can_see_collection(collection):
            raise NotFound(f"collection {collection!r} does not exist")

    def check_write(self, collection: str) -> None:
        if not self.can_see_collection(collection):
            raise Forbidden(f"this key may not write to collection {collection!r}")

    def can_see_collection(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def reading(self, collection: str | None, metadata: dict[str, Any] | None = None) -> ChunkFilter:
        """What this caller may retrieve (its collections and principals go into every store query); needs
        the read scope. ``metadata``: field -> a value (equals) or a list of values (any of)."""
        self.require(Scope.READ)
        self.check_read(collection)
        return ChunkFilter(
            collection=collection,
            collections=self.collections,
            metadata=dict(metadata or {}),
            principals=self.principals,
        )

    def acting_for(self, on_behalf_of: str | None) -> Caller:
        """The caller acting for an end user (X-On-Behalf-Of): that user's principals replace the key's own."""
        if on_behalf_of is None:
            return self
        if Scope.IMPERSONATE not in self.scopes:
            raise Forbidden("X-On-Behalf-Of needs a key with the 'impersonate' scope")
        return replace(self, principals=parse_principals(on_behalf_of))


ADMIN = Caller(key_id="admin", scopes=ALL_SCOPES)
# The CLI and the service's own sources act with every right: they run where the database settings are.
SYSTEM = Caller(key_id=None, scopes=ALL_SCOPES)
ANONYMOUS_LOCAL = Caller(key_id=None, scopes=ALL_SCOPES)


def new_secret() -> str:
    return "ks_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_principals(raw: str) -> list[str]:
    principals = [p.strip() for p in raw.split(",") if p.strip()]
    if not principals or not all(is_principal(p) for p in principals):
        raise Forbidden(f"X-On-Behalf-Of must list principals, comma separated: {PRINCIPAL_RULE}")
    return principals


def identify(settings: Settings, sessions: sessionmaker[Session], authorization: str | None) -> Caller:
    """The caller a bearer key stands for. Without any key the service is open only while no key has ever
    existed and no admin key is set (the loopback development mode): once a key has been created, revoking
    every key never opens it again."""
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    if not authorization:
        if not admin_key:
            with sessions() as session:
                if not ApiKeyRepository(session).any():
                    return ANONYMOUS_LOCAL
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", headers=_BEARER)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("malformed Authorization header: use 'Bearer <key>'", headers=_BEARER)
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return ADMIN
    with sessions() as session:
        key = ApiKeyRepository(session).by_hash(hash_secret(token))
    if key is None or key.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key", headers=_BEARER)
    scopes = frozenset(key.scopes)
    unrestricted = Scope.ADMIN in scopes
    return Caller(
        key_id=key.id,
        scopes=scopes,
        principals=None if unrestricted else list(key.principals),
        collections=None if unrestricted else (list(key.collections) if key.collections is not None else None),
    )
