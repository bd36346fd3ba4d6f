"""Uploads are spooled to disk block by block, hashed as they arrive, and moved (not copied) into the blob store."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from app.core.errors import PayloadTooLarge
from app.ingest.blobs import LocalBlobStore, clear_stale_spool
from app.ingest.payload import HEAD, IN_MEMORY, Payload

DOC_ID = "0123456789abcdef0123456789abcdef"


def test_a_small_upload_stays_in_memory(tmp_path: Path):
    p = Payload.spool(io.BytesIO(b"Lunch is served at noon."), tmp_path / "spool", limit=1000)
    assert p.in_memory and p.size == 24 and p.read() == b"Lunch is served at noon."
    assert p.sha256 == hashlib.sha256(b"Lunch is served at noon.").hexdigest()
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


def test_a_large_upload_is_spooled_to_a_file_and_hashed(tmp_path: Path):
    data = b"0123456789" * (IN_MEMORY // 5)  # 2 MiB
    p = Payload.spool(io.BytesIO(data), tmp_path / "spool", limit=len(data))
    assert not p.in_memory and p.path is not None and p.path.parent == tmp_path / "spool"
    assert p.size == len(data) and p.sha256 == hashlib.sha256(data).hexdigest()
    assert p.head == data[:HEAD] and p.read() == data
    p.discard()
    assert not p.path.exists()


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(tmp_path: Path):
    data = b"x" * (3 * IN_MEMORY)
    with pytest.raises(PayloadTooLarge) as err:
        Payload.spool(io.BytesIO(data), tmp_path / "spool", limit=2 * IN_MEMORY)
    assert err.value.status == 413 and "KS_MAX_UPLOAD_MB" in err.value.detail
    assert list((tmp_path / "spool").iterdir()) == []
    with pytest.raises(PayloadTooLarge):
        Payload.spool(io.BytesIO(b"y" * 100), tmp_path / "spool", limit=99)


def test_the_blob_store_moves_a_spool_file_and_copies_a_callers_file(tmp_path: Path):
    blobs = LocalBlobStore(tmp_path / "blobs")
    data = b"abc" * IN_MEMORY
    spooled = Payload.spool(io.BytesIO(data), tmp_path / "spool", limit=len(data))
    spool_file = spooled.path
    blobs.put(DOC_ID, spooled)
    assert spool_file is not None and not spool_file.exists()  # moved, not copied
    spooled.discard()  # no longer ours: nothing happens to the blob
    stored = blobs.get(DOC_ID)
    assert stored.read() == data and stored.size == len(data)

    mine = tmp_path / "mine.txt"
    mine.write_bytes(b"The caller's own file.")
    blobs.put("f" * 32, Payload.of_file(mine))
    assert mine.exists() and blobs.get("f" * 32).read() == b"The caller's own file."
    blobs.delete(DOC_ID)
    assert not blobs.exists(DOC_ID)
    with pytest.raises(FileNotFoundError):
        blobs.get(DOC_ID)
    with pytest.raises(ValueError):
        blobs.get("../etc/passwd")


def test_stale_spool_files_are_cleared(tmp_path: Path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "old.upload").write_bytes(b"cut off")
    assert clear_stale_spool(spool, older_than_s=3600) == 0
    assert clear_stale_spool(spool, older_than_s=-1) == 1 and list(spool.iterdir()) == []
