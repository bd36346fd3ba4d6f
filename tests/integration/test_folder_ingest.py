"""`knowledge-search ingest DIR`: a folder tree in parallel, unchanged files skipped, and a run killed mid-way
resumed without redoing the files it finished (both backends)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.container import build_container
from app.core.config import Settings
from app.stores.vector.base import ChunkFilter
from tests.integration.test_process import BIN, _env

pytestmark = pytest.mark.process


def _tree(root: Path, files: int, paragraphs: int) -> None:
    for i in range(files):
        folder = root / f"team-{i % 3}" / ("archive" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(
            f"Note {i}.{p}: meeting room {i} on floor {p % 6} is booked for the {p}th review of project {i * 7 + p}."
            for p in range(paragraphs)
        )
        (folder / f"note-{i:02d}.md").write_text(f"# Note {i}\n\n{body}\n", encoding="utf-8")
    (root / "team-0" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)  # not a document: not picked


def _ingest(settings: Settings, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN), "ingest", str(root), "--collection", "notes", "--workers", "2"],
        env=_env(settings, COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summary(stderr: str) -> tuple[int, int, int]:
    found = re.findall(r"indexed (\d+), unchanged (\d+), failed (\d+)", stderr)
    assert found, stderr
    indexed, unchanged, failed = found[-1]
    return int(indexed), int(unchanged), int(failed)


def _indexed(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM documents WHERE status = 'indexed'")).scalar_one()
    finally:
        engine.dispose()


def test_a_folder_is_ingested_in_parallel_and_unchanged_files_are_skipped(settings: Settings, tmp_path: Path):
    _tree(tmp_path / "docs", files=6, paragraphs=2)
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.7\n not really a pdf \x00\x01")
    run = _ingest(settings, tmp_path / "docs")
    _, err = run.communicate(timeout=300)
    assert run.returncode == 1, err  # one file failed
    assert _summary(err) == (6, 0, 1)
    assert "broken.pdf" in err and "PDF" in err

    (tmp_path / "docs" / "team-1" / "archive" / "note-01.md").write_text("# Note 1\n\nRewritten: room 1 is closed.\n")
    run = _ingest(settings, tmp_path / "docs")
    _, err = run.communicate(timeout=300)
    assert _summary(err) == (1, 5, 1)  # only the changed file is indexed again...
    container = build_container(settings)
    try:
        with container.sessions() as session:
            statuses = session.execute(text("SELECT status, count(*) FROM documents GROUP BY status")).all()
        # ...in place: no second copy of it; the broken file left nothing behind, as an API upload would not
        assert dict(statuses) == {"indexed": 6}
        hits = container.search.search("rewritten room closed", ChunkFilter(collection="notes"), 1, "keyword").hits
        assert "Rewritten: room 1 is closed." in hits[0].chunk.text
    finally:
        container.close()


def test_an_interrupted_folder_ingest_resumes_without_redoing_finished_files(settings: Settings, tmp_path: Path):
    _tree(tmp_path / "docs", files=14, paragraphs=12)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run = _ingest(settings, tmp_path / "docs")
    url = settings.resolved_database_url
    deadline = time.monotonic() + 300
    done_before_kill = 0
    while run.poll() is None and time.monotonic() < deadline:
        try:
            done_before_kill = _indexed(url)
        except Exception:  # the database is still being created
            done_before_kill = 0
        if done_before_kill >= 3:
            break
        time.sleep(0.1)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert 3 <= done_before_kill < 14, "the run should be killed part-way"

    run = _ingest(settings, tmp_path / "docs")
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    indexed, unchanged, failed = _summary(err)
    assert failed == 0 and indexed + unchanged == 14
    assert unchanged >= done_before_kill  # finished files were not redone

    container = build_container(settings)
    try:
        assert container.ingest.inspect().clean  # no duplicate or orphan chunks from the killed run
        with container.sessions() as session:
            statuses = session.execute(text("SELECT status, count(*) FROM documents GROUP BY status")).all()
        assert dict(statuses) == {"indexed": 14}
    finally:
        container.close()
