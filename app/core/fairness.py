"""A lock that serves its waiters round-robin by caller, so one caller's many requests cannot starve another's one.

The local embedding model runs one call at a time. Behind a plain lock, a key that sends twenty long requests
makes every other key wait for all twenty. Here each caller (the API key of the request being served; requests
outside one, such as background ingest jobs, share one queue) has its own queue, and the lock goes to the next
caller in turn, never twice running to the same caller while another waits: a caller that arrives while another
has twenty queued waits for the call in progress only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager

from app.core import context

BACKGROUND = "(background)"


def current_caller() -> str:
    """Whom the current request is for: its API key id, else its client address, else the background queue."""
    ctx = context.current()
    if ctx is None:
        return BACKGROUND
    return ctx.key_id or ctx.client_addr or BACKGROUND


class FairLock:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._holder: str | None = None
        # caller → its waiters, oldest first; callers in the order they take their next turn
        self._queues: OrderedDict[str, deque[threading.Event]] = OrderedDict()

    @contextmanager
    def hold(self, caller: str | None = None) -> Iterator[None]:
        self.acquire(caller if caller is not None else current_caller())
        try:
            yield
        finally:
            self.release()

    def acquire(self, caller: str) -> None:
        with self._mutex:
            if not self._held:
                self._held, self._holder = True, caller
                return
            turn = threading.Event()
            self._queues.setdefault(caller, deque()).append(turn)
        turn.wait()  # release() hands the lock over: it stays held, now by us

    def release(self) -> None:
        with self._mutex:
            if not self._queues:
                self._held, self._holder = False, None
                return
            holder = self._holder
            if holder is not None and holder in self._queues:  # who just had a turn goes after everyone else
                self._queues.move_to_end(holder)
            caller, waiters = next(iter(self._queues.items()))
            turn = waiters.popleft()
            if waiters:
                self._queues.move_to_end(caller)  # its next waiter comes after everyone else's
            else:
                del self._queues[caller]
            self._holder = caller
            turn.set()

    def waiting(self) -> dict[str, int]:
        """Waiters per caller, in the order their callers take their next turns."""
        with self._mutex:
            return {caller: len(waiters) for caller, waiters in self._queues.items()}
