"""Sources an admin registers: which bucket and prefix, into which collection, readable by whom.

The caller of a sync names a registered source and nothing else, so no key can point the service's own cloud
credentials at a bucket of its choosing, or choose the access list of what comes out of it.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.access.caller import Caller
from app.core.errors import BadInput, Conflict, NotFound
from app.core.patterns import COLLECTION_RULE, PRINCIPAL_RULE, is_collection, is_principal
from app.core.states import Scope
from app.stores.sql.models import Source
from app.stores.sql.repositories import SourceRepository

SOURCE_KINDS = ("s3",)


class SourceRegistry:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def register(
        self,
        caller: Caller,
        *,
        name: str,
        bucket: str,
        prefix: str,
        collection: str,
        acl: list[str] | None,
        kind: str = "s3",
    ) -> Source:
        caller.require(Scope.ADMIN)
        if kind not in SOURCE_KINDS:
            raise BadInput(f"source kinds are {', '.join(SOURCE_KINDS)}")
        if not is_collection(name):
            raise BadInput(f"source names follow the collection rule: {COLLECTION_RULE}")
        if not is_collection(collection):
            raise BadInput(COLLECTION_RULE)
        if acl and not all(is_principal(p) for p in acl):
            raise BadInput(f"acl: {PRINCIPAL_RULE}")
        try:
            with self._sessions.begin() as session:
                return SourceRepository(session).add(
                    Source(
                        name=name,
                        kind=kind,
                        bucket=bucket,
                        prefix=prefix,
                        collection=collection,
                        acl=list(dict.fromkeys(acl)) if acl else None,
                        created_by=caller.key_id,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(f"a source named {name!r} exists already: remove it first, or choose another name") from exc

    def get(self, caller: Caller, name: str) -> Source:
        """A source the caller may sync or manage; others look like they do not exist."""
        if not caller.is_admin:
            caller.require(Scope.SYNC)
        with self._sessions() as session:
            source = SourceRepository(session).by_name(name)
        if source is None or not caller.can_see_collection(source.collection):
            raise NotFound(f"source {name!r} does not exist")
        return source

    def all(self, caller: Caller) -> list[Source]:
        if not caller.is_admin:
            caller.require(Scope.SYNC)
        with self._sessions() as session:
            return [s for s in SourceRepository(session).all() if caller.can_see_collection(s.collection)]

    def find(self, *, bucket: str, prefix: str, collection: str) -> Source | None:
        """The registered source for exactly this place (the CLI's ``ingest s3://...``)."""
        with self._sessions() as session:
            for source in SourceRepository(session).all():
                if (source.bucket, source.prefix, source.collection) == (bucket, prefix, collection):
                    return source
        return None

    def remove(self, caller: Caller, name: str) -> Source:
        caller.require(Scope.ADMIN)
        with self._sessions.begin() as session:
            repo = SourceRepository(session)
            source = repo.by_name(name)
            if source is None:
                raise NotFound(f"source {name!r} does not exist")
            repo.delete(source)
            return source
