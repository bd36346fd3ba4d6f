"""Audit events are written off the request path (app.access.audit_journal); none is lost when the process dies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from app.access.audit import AuditLog, Pending
from app.core.config import Settings
from app.stores.sql import migrate
from app.stores.sql.session import build_engine, build_session_factory
from tests.integration.test_process import Server


@pytest.mark.process
def test_events_of_a_killed_server_are_stored_when_it_starts_again(settings: Settings):
    # A flush interval far longer than the test: every event is still only in the journal at the kill.
    server = Server(settings, KS_AUDIT_FLUSH_MS="10000")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for i in range(5):
                r = http.post("/v1/search", json={"query": f"paid leave {i}"}, headers={"X-Request-ID": f"search-{i}"})
                assert r.status_code == 200, r.text
            r = http.post("/v1/search", json={"query": ""}, headers={"X-Request-ID": "refused-1"})
            assert r.status_code == 422
    finally:
        server.proc.kill()  # kill -9: no shutdown, no flush
        server.proc.wait()
    server = Server(settings)
    try:
        events = httpx.get(f"{server.url}/v1/audit", params={"limit": 100}, timeout=60).json()["items"]
    finally:
        server.stop()
    by_request = {e["request_id"]: e for e in events}
    assert {f"search-{i}" for i in range(5)} | {"refused-1"} <= set(by_request)
    assert by_request["refused-1"]["status"] == 422
    assert all(by_request[f"search-{i}"]["client_addr"] == "127.0.0.1" for i in range(5))
    assert len([e for e in events if e["request_id"] in by_request and e["action"] == "search"]) == 6  # no twice
    assert not list((settings.data_dir / "audit-journal").glob("*.jsonl")), "the stopped server left its journal"


def test_a_batch_committed_just_before_the_crash_is_not_stored_twice(tmp_path: Path):
    """The process died after committing a batch but before noting it in its journal."""
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    engine = build_engine(settings)
    migrate.upgrade(engine)
    sessions = build_session_factory(engine)
    journal_dir = tmp_path / "journal"
    dead = AuditLog(sessions, journal_dir=journal_dir, flush_s=10)
    for i in range(3):
        dead.record("key1", None, "search", Pending(targets=[f"doc{i}"]))
    dead.flush()  # committed, and noted
    (path,) = journal_dir.glob("*.jsonl")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if '"done"' not in line) + "\n")  # the note never written
    journal = dead._journal
    assert journal is not None
    for i in range(2):  # and two more that never reached the database
        journal._seq += 1
        event = {"at": f"2026-11-29T10:00:0{i}+00:00", "key_id": "key1", "principals": None, "action": "chat"}
        event |= {"target_ids": [], "status": 200, "detail": None, "client_addr": None, "request_id": f"lost-{i}"}
        os.write(journal._fd, (json.dumps({"seq": journal._seq, "event": event}) + "\n").encode())
    os.close(journal._fd)  # the process is gone, and its lock with it

    alive = AuditLog(sessions, journal_dir=journal_dir, flush_s=10)
    assert alive.recover() == 2
    events = alive.query(since=None, action=None, limit=100)
    assert sorted(e.action for e in events) == ["chat", "chat", "search", "search", "search"]
    assert not path.exists()
    alive.close()
    assert not list(journal_dir.glob("*.jsonl"))
    engine.dispose()


def test_an_event_carrying_a_nul_is_stored_and_does_not_hold_up_the_others(tmp_path: Path):
    """A refusal's detail can quote a file name with a NUL in it; the database refuses NUL in text. The event is
    stored with U+FFFD instead, and the events after it are not stuck behind it."""
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    engine = build_engine(settings)
    migrate.upgrade(engine)
    audit = AuditLog(build_session_factory(engine), journal_dir=tmp_path / "journal", flush_s=0.05)
    audit.record("key1", ["user:a"], "ingest", Pending(status=415, detail="'evil\x00.txt' is a binary file"))
    audit.record("key1", ["user:a"], "search", Pending(status=200))
    events = audit.query(since=None, action=None, limit=10)
    assert sorted(e.action for e in events) == ["ingest", "search"]
    assert [e.detail for e in events if e.action == "ingest"] == ["'evil\ufffd.txt' is a binary file"]
    audit.close()
    engine.dispose()
