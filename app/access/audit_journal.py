"""Audit events written off the request path, in batches, without losing one when the process dies.

A request appends its event to this process's journal file (one ``write`` of one JSON line: the kernel holds
it from then on, so ``kill -9`` or a crash of the process cannot lose it) and goes on; a writer thread inserts
what has gathered in one transaction every ``flush_s`` (or every ``max_batch`` events) and then notes in the
journal the last event committed. A process that starts takes over the journals of processes that are gone
(each live process holds an exclusive ``flock`` on its own) and inserts the events their last note does not
cover, skipping any that its last transaction had already committed.

What can still be lost: events of the last seconds on an operating-system crash or power loss (the journal is
not fsynced, as SQLite in WAL mode with ``synchronous=NORMAL`` is not), and the journal of an instance whose
disk does not come back. A clean stop flushes everything and removes its journal.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]  # the AuditEvent's columns, ``at`` as ISO text in the journal


class AuditJournal:
    def __init__(
        self,
        directory: Path,
        write: Callable[[list[Event]], None],
        committed: Callable[[Event], bool],
        *,
        flush_s: float = 0.2,
        max_batch: int = 500,
    ) -> None:
        """``write`` inserts events in one transaction; ``committed`` says whether an event is already stored
        (asked only of the events a dead process may have committed without noting it)."""
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._write, self._committed = write, committed
        self._flush_s, self._max_batch = flush_s, max_batch
        self._path = self._dir / f"audit-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live; a dead owner's lock is gone
        self._lock = threading.Condition()
        self._pending: list[Event] = []
        self._seq = 0  # the last event appended
        self._done = 0  # the last event committed
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def append(self, event: Event) -> None:
        with self._lock:
            if self._closed:  # after close (a late request during shutdown): write it through
                self._write([event])
                return
            self._seq += 1
            line = json.dumps({"seq": self._seq, "event": _dumpable(event)}, ensure_ascii=False) + "\n"
            os.write(self._fd, line.encode())
            self._pending.append(event)
            if len(self._pending) >= self._max_batch:
                self._lock.notify_all()

    def flush(self) -> None:
        """Wait until every event appended so far is committed (a reader of the audit sees its own writes)."""
        with self._lock:
            target = self._seq
            self._lock.notify_all()
            while self._done < target and self._thread.is_alive():
                self._lock.wait(1)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(10)
        if self._done == self._seq:
            self._path.unlink(missing_ok=True)
        os.close(self._fd)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending and not self._closed:
                    self._lock.wait(self._flush_s)
                if not self._pending:
                    if self._closed:
                        return
                    continue
                batch, self._pending, last = self._pending, [], self._seq
            try:
                self._write(batch)
            except Exception:  # the database is away: keep the events (they are in the journal) and try again
                log.exception("could not write %d audit events; retrying", len(batch))
                with self._lock:
                    self._pending[:0] = batch
                    self._lock.wait(1)
                continue
            with self._lock:
                self._done = last
                if not self._pending and os.fstat(self._fd).st_size > 1 << 20:
                    os.ftruncate(self._fd, 0)  # all committed: start the journal afresh
                else:
                    os.write(self._fd, f'{{"done": {last}}}\n'.encode())
                self._lock.notify_all()

    # --- taking over the journals of dead processes ---
    def recover(self) -> int:
        """Insert what dead processes' journals hold beyond their last note; returns how many events."""
        restored = 0
        for path in sorted(self._dir.glob("audit-*.jsonl")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                os.close(fd)
                continue
            try:
                restored += self._replay(path)
                path.unlink()
            finally:
                os.close(fd)
        return restored

    def _replay(self, path: Path) -> int:
        events: list[tuple[int, Event]] = []
        done = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by the crash was never acknowledged to anyone: skip it
                continue
            if "done" in entry:
                done = max(done, int(entry["done"]))
            else:
                events.append((int(entry["seq"]), _loaded(entry["event"])))
        missing = [e for seq, e in events if seq > done]
        # The dead process may have committed its last batch without noting it: skip what is already stored.
        missing = [e for e in missing if not self._committed(e)]
        if missing:
            self._write(missing)
            log.warning("restored %d audit events from %s", len(missing), path.name)
        return len(missing)


def _dumpable(event: Event) -> Event:
    return {**event, "at": event["at"].isoformat()}


def _loaded(event: Event) -> Event:
    return {**event, "at": datetime.fromisoformat(event["at"])}
