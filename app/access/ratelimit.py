"""Per-key request limits.

Two ways to count, one answer (429 with Retry-After):
- ``KeyRateLimiter``: a moving window in this process's memory (the `limits` library). Enough for one process,
  the embedded default.
- ``SharedRateLimiter``: the same moving window, kept in the metadata database (one row per request of the last
  minute), so the limit holds for a key across every instance behind the gateway; with memory counting, N
  instances would allow N times the limit. A per-key advisory lock makes count-then-add atomic on Postgres.

KS_RATE_LIMIT_STORAGE chooses: ``auto`` (the default) counts in the database on Postgres and in memory on SQLite,
whose single writer should not take a write per request.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import RateLimited
from app.stores.sql.repositories import RateLimitRepository

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def check(self, key_id: str | None) -> None:
        """Raise RateLimited when the key has used up its requests of the last minute."""


def _refuse(limit: int, retry: int) -> RateLimited:
    return RateLimited(
        f"rate limit of {limit} requests per minute reached for this key; retry in {retry} s",
        headers={"Retry-After": str(retry)},
    )


class KeyRateLimiter:
    def __init__(self, per_minute: int) -> None:
        self._item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, key_id: str | None) -> None:
        if self._item is None:
            return
        identity = key_id or "anonymous"
        if self._limiter.hit(self._item, identity):
            return
        reset_at, _remaining = self._limiter.get_window_stats(self._item, identity)
        raise _refuse(self._item.amount, max(1, math.ceil(reset_at - time.time())))


class SharedRateLimiter:
    def __init__(self, sessions: sessionmaker[Session], per_minute: int) -> None:
        self._sessions, self._limit = sessions, per_minute
        self._calls = 0

    def check(self, key_id: str | None) -> None:
        if self._limit <= 0:
            return
        identity = key_id or "anonymous"
        now = time.time()
        with self._sessions.begin() as session:
            repo = RateLimitRepository(session)
            repo.lock(identity)
            used, oldest = repo.since(identity, now - 60.0)
            if used >= self._limit:
                # refused requests are not counted: the allowance comes back as the oldest ones slide out
                raise _refuse(self._limit, max(1, math.ceil((oldest or now) + 60.0 - now)))
            repo.add(identity, now)
            self._calls += 1
            if self._calls % 1000 == 1:  # now and then, drop what no window reads any more
                repo.prune(now - 60.0)


def build_rate_limiter(storage: str, sessions: sessionmaker[Session], per_minute: int, is_sqlite: bool) -> RateLimiter:
    if storage == "database" or (storage == "auto" and not is_sqlite):
        return SharedRateLimiter(sessions, per_minute)
    return KeyRateLimiter(per_minute)
