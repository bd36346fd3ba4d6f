"""The audit trail: who did what to which ids, from where, and how it ended. Never secrets, never document text.

Every event carries the request id and the client's address from the request being served
(``app.core.context``), so an entry can be matched with the access log and the gateway's. Refused requests
(a bad key, a scope or impersonation refused, a request that fails validation) are recorded too: by the route
when it gets that far, otherwise by the error handlers through ``refusal``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.access.audit_journal import AuditJournal
from app.access.caller import Caller
from app.core import context
from app.core.errors import AppError
from app.stores.sql.models import AuditEvent, utcnow
from app.stores.sql.repositories import AuditRepository

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Pending:
    targets: list[str] = field(default_factory=list)
    status: int = 200
    detail: str | None = None

    def failed(self, exc: BaseException) -> None:
        """The action ended with this error: a problem's status and title, or 500 for anything else."""
        if isinstance(exc, AppError):
            self.status, self.detail = exc.status, exc.title
        else:
            self.status, self.detail = 500, "internal error"


class AuditLog:
    """With ``journal_dir`` events are written off the request path in batches (``audit_journal``: nothing is
    lost when the process dies); without, each in its own transaction as it happens."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        retention_days: int = 365,
        *,
        journal_dir: Path | None = None,
        flush_s: float = 0.2,
    ) -> None:
        self._sessions = sessions
        self._retention = timedelta(days=retention_days)
        self._writes = 0
        self._journal = (
            AuditJournal(journal_dir, self._insert, self._holds, flush_s=flush_s) if journal_dir is not None else None
        )

    def recover(self) -> int:
        """Store the events that processes which died left in their journals (at start)."""
        return self._journal.recover() if self._journal is not None else 0

    def flush(self) -> None:
        if self._journal is not None:
            self._journal.flush()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    @contextmanager
    def action(self, caller: Caller, action: str, targets: list[str] | None = None) -> Iterator[Pending]:
        """Record the action when the block ends, with the status it ended with."""
        pending = Pending(targets=list(targets or []))
        try:
            yield pending
        except BaseException as exc:
            pending.failed(exc)
            raise
        finally:
            self.record(caller.key_id, caller.principals, action, pending)

    def record(self, key_id: str | None, principals: list[str] | None, action: str, pending: Pending) -> None:
        ctx = context.current()
        if ctx is not None:
            ctx.audited = True
        event = {
            "at": utcnow(),
            "key_id": key_id,
            "principals": principals,
            "action": action,
            "target_ids": [t for t in pending.targets if t][:100],
            "status": pending.status,
            "detail": (pending.detail or "")[:512] or None,
            "client_addr": ctx.client_addr if ctx is not None else None,
            "request_id": ctx.request_id if ctx is not None else None,
        }
        event = _storable(event)
        try:
            if self._journal is not None:
                self._journal.append(event)
            else:
                self._insert([event])
        except Exception:  # an audit failure must be seen, but must not turn a done action into an error
            log.exception("could not write the audit event for %s", action)

    def _insert(self, events: list[dict[str, Any]]) -> None:
        with self._sessions.begin() as session:
            repo = AuditRepository(session)
            repo.add_many(events)
            before, self._writes = self._writes, self._writes + len(events)
            if before // 1000 != self._writes // 1000 or before == 0:  # now and then, drop what is past retention
                repo.prune(utcnow() - self._retention)

    def _holds(self, event: dict[str, Any]) -> bool:
        with self._sessions() as session:
            return AuditRepository(session).holds(event)

    def refusal(self, action: str, status: int, detail: str) -> None:
        """A request refused before its route could record it (authentication, scope, validation)."""
        ctx = context.current()
        if ctx is not None and ctx.audited:
            return
        key_id = ctx.key_id if ctx is not None else None
        self.record(key_id, None, action, Pending(status=status, detail=detail))

    def query(self, *, since: datetime | None, action: str | None, limit: int) -> list[AuditEvent]:
        self.flush()  # what this process recorded so far is in the answer
        with self._sessions() as session:
            return AuditRepository(session).query(since=since, action=action, limit=limit)


def _storable(value: Any) -> Any:
    """The event with any NUL character (a file name or a message can carry one) as U+FFFD: the database refuses
    NUL in text, and one event it refuses would hold up every event behind it in the journal."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value
