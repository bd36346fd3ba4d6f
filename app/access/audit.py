"""The audit trail: who did what to which ids, and how it ended. Never secrets, never document text."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.access.caller import Caller
from app.core.errors import AppError
from app.stores.sql.models import AuditEvent, utcnow
from app.stores.sql.repositories import AuditRepository

log = logging.getLogger(__name__)
ACTIONS = ("ingest", "update", "delete", "search", "chat", "key.create", "key.revoke", "collection.update")


@dataclass(slots=True)
class Pending:
    targets: list[str] = field(default_factory=list)
    status: int = 200
    detail: str | None = None


class AuditLog:
    def __init__(self, sessions: sessionmaker[Session], retention_days: int = 365) -> None:
        self._sessions = sessions
        self._retention = timedelta(days=retention_days)
        self._writes = 0

    @contextmanager
    def action(self, caller: Caller, action: str, targets: list[str] | None = None) -> Iterator[Pending]:
        """Record the action when the block ends, with the status it ended with."""
        pending = Pending(targets=list(targets or []))
        try:
            yield pending
        except AppError as exc:
            pending.status, pending.detail = exc.status, exc.title
            raise
        except Exception:
            pending.status, pending.detail = 500, "internal error"
            raise
        finally:
            self.record(caller, action, pending)

    def record(self, caller: Caller, action: str, pending: Pending) -> None:
        try:
            with self._sessions.begin() as session:
                repo = AuditRepository(session)
                repo.add(
                    AuditEvent(
                        key_id=caller.key_id,
                        principals=caller.principals,
                        action=action,
                        target_ids=[t for t in pending.targets if t][:100],
                        status=pending.status,
                        detail=pending.detail,
                    )
                )
                self._writes += 1
                if self._writes % 1000 == 1:  # now and then, drop what is past retention
                    repo.prune(utcnow() - self._retention)
        except Exception:  # an audit failure must be seen, but must not turn a done action into an error
            log.exception("could not write the audit event for %s", action)
