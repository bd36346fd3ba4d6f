"""Who is calling. Today: the admin key (or nobody, on loopback, when no key is set).

A ``Caller`` carries what later access control needs: scopes, principals and allowed collections.
``principals=None`` means unrestricted (sees every document).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from app.core.config import Settings
from app.core.errors import Forbidden, Unauthorized

SCOPES = ("read", "write", "admin", "impersonate")


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str | None
    scopes: frozenset[str]
    principals: list[str] | None = None
    collections: list[str] | None = None

    def require(self, scope: str) -> None:
        if "admin" not in self.scopes and scope not in self.scopes:
            raise Forbidden(f"this key lacks the '{scope}' scope")


ADMIN = Caller(key_id="admin", scopes=frozenset(SCOPES))
ANONYMOUS_LOCAL = Caller(key_id=None, scopes=frozenset(SCOPES))


def authenticate(settings: Settings, authorization: str | None) -> Caller:
    configured = settings.admin_key.get_secret_value() if settings.admin_key else None
    if not configured:
        return ANONYMOUS_LOCAL
    if not authorization:
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"}
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed Authorization header: use 'Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    if hmac.compare_digest(token.strip().encode(), configured.encode()):
        return ADMIN
    raise Unauthorized("invalid API key", headers={"WWW-Authenticate": "Bearer"})
