"""Who is calling, and what they may see.

A request authenticates with ``Authorization: Bearer <key>``: the admin key (KS_ADMIN_KEY) or an API key
created with ``POST /v1/keys`` / ``knowledge-search keys create`` (stored only as a sha256 hash). The
resulting ``Caller`` carries scopes, principals and allowed collections; stores receive its principals and
collections as filters, so access control happens inside every query.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.errors import Forbidden, NotFound, Unauthorized
from app.stores.sql.repositories import ApiKeyRepository

SCOPES = ("read", "write", "admin", "impersonate")
PRINCIPAL = re.compile(r"^[a-z][a-z0-9_-]{0,31}:[^\s,]{1,200}$")
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
        return "admin" in self.scopes

    def require(self, scope: str) -> None:
        if not self.is_admin and scope not in self.scopes:
            raise Forbidden(f"this key lacks the '{scope}' scope")

    def check_read(self, collection: str | None) -> None:
        """Reading a collection outside the key's reach looks exactly like reading one that does not exist."""
        if collection is not None and self.collections is not None and collection not in self.collections:
            raise NotFound(f"collection {collection!r} does not exist")

    def check_write(self, collection: str) -> None:
        if self.collections is not None and collection not in self.collections:
            raise Forbidden(f"this key may not write to collection {collection!r}")

    def can_see_collection(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


ADMIN = Caller(key_id="admin", scopes=frozenset(SCOPES))
ANONYMOUS_LOCAL = Caller(key_id=None, scopes=frozenset(SCOPES))


def new_secret() -> str:
    return "ks_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_principals(raw: str) -> list[str]:
    principals = [p.strip() for p in raw.split(",") if p.strip()]
    bad = [p for p in principals if not PRINCIPAL.match(p)]
    if bad or not principals:
        raise Forbidden(
            "X-On-Behalf-Of must list principals like 'user:alice,group:sales' (kind:name, comma separated)"
        )
    return principals


def authenticate(
    settings: Settings,
    sessions: sessionmaker[Session],
    authorization: str | None,
    on_behalf_of: str | None = None,
) -> Caller:
    caller = _identify(settings, sessions, authorization)
    if on_behalf_of is not None:
        if "impersonate" not in caller.scopes:
            raise Forbidden("X-On-Behalf-Of needs a key with the 'impersonate' scope")
        # The trusted app has authenticated its user: the request runs with that user's principals only.
        caller = replace(caller, principals=parse_principals(on_behalf_of))
    return caller


def _identify(settings: Settings, sessions: sessionmaker[Session], authorization: str | None) -> Caller:
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    if not authorization:
        if not admin_key:
            with sessions() as session:
                if not ApiKeyRepository(session).any_active():
                    return ANONYMOUS_LOCAL  # no key anywhere: loopback-only development mode
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
    unrestricted = "admin" in scopes
    return Caller(
        key_id=key.id,
        scopes=scopes,
        principals=None if unrestricted else list(key.principals),
        collections=None if unrestricted else (list(key.collections) if key.collections is not None else None),
    )
