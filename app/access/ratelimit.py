"""Per-key request limits (moving window, per process) with the `limits` library."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app.core.errors import RateLimited


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
        retry = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(
            f"rate limit of {self._item.amount} requests per minute reached for this key; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )
