"""Where uploaded originals wait for their ingest job. Names are document ids, never client file names.

``LocalBlobStore`` keeps them in a directory: one node, or several nodes that mount the same directory.
``S3BlobStore`` keeps them in a bucket, so API nodes and ``knowledge-search worker`` processes on other
machines share the queue's files without shared storage (``KS_BLOB_STORE=s3://bucket/prefix``).
Either way the original leaves the store once its document is indexed (or deleted).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from app.ingest.payload import BLOCK, HEAD, Payload

_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")
_MISSING = ("404", "NoSuchKey", "NotFound")


class BlobStore(Protocol):
    def put(self, document_id: str, payload: Payload) -> None:
        """Store the original durably (a spool file of the payload's is moved rather than copied)."""

    def get(self, document_id: str) -> Payload:
        """The original; the caller calls ``discard()`` on it when done (removes a downloaded copy)."""

    def exists(self, document_id: str) -> bool: ...

    def delete(self, document_id: str) -> None: ...


def _check(document_id: str) -> str:
    if not _SAFE_ID.match(document_id):
        raise ValueError("blob names are document ids")
    return document_id


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, document_id: str) -> Path:
        return self.root / _check(document_id)

    def put(self, document_id: str, payload: Payload) -> None:
        path = self._path(document_id)
        tmp = path.with_suffix(".part")
        spooled = payload.take_file()
        if spooled is not None:
            shutil.move(spooled, tmp)  # a rename when the spool is on this file system
        else:
            with payload.open() as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, BLOCK)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def get(self, document_id: str) -> Payload:
        return Payload.of_file(self._path(document_id), hash_it=False)

    def exists(self, document_id: str) -> bool:
        return self._path(document_id).exists()

    def delete(self, document_id: str) -> None:
        self._path(document_id).unlink(missing_ok=True)


class S3BlobStore:
    """Originals as ``s3://bucket/prefix/<document id>``; reads download to a local spool file."""

    def __init__(self, client: Any, bucket: str, prefix: str, spool_dir: Path) -> None:
        self._client, self._bucket = client, bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._spool = spool_dir

    @classmethod
    def from_url(cls, url: str, spool_dir: Path, *, region: str | None = None) -> S3BlobStore:
        from app.ingest.s3client import s3_client

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"KS_BLOB_STORE={url!r}: expected s3://bucket[/prefix]")
        return cls(s3_client(region), bucket, prefix, spool_dir)

    def _key(self, document_id: str) -> str:
        return self._prefix + _check(document_id)

    def put(self, document_id: str, payload: Payload) -> None:
        with payload.open() as src:  # managed transfer: multipart for large files, never all in memory
            self._client.upload_fileobj(src, self._bucket, self._key(document_id))
        payload.discard()

    def get(self, document_id: str) -> Payload:
        self._spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._spool, suffix=".blob")
        path = Path(name)
        from botocore.exceptions import ClientError

        try:
            with os.fdopen(fd, "wb") as out:
                self._client.download_fileobj(self._bucket, self._key(document_id), out)
            with open(path, "rb") as fh:
                head = fh.read(HEAD)
        except ClientError as exc:
            path.unlink(missing_ok=True)
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise FileNotFoundError(f"s3://{self._bucket}/{self._key(document_id)}") from exc
            raise
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Payload(size=path.stat().st_size, head=head, path=path, owned=True)

    def exists(self, document_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self._bucket, Key=self._key(document_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise
        return True

    def delete(self, document_id: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=self._key(document_id))


def build_blob_store(setting: str, data_dir: Path, *, region: str | None = None) -> BlobStore:
    """``KS_BLOB_STORE``: ``local`` (``<data dir>/blobs``), a directory path, or ``s3://bucket/prefix``."""
    if setting.startswith("s3://"):
        return S3BlobStore.from_url(setting, data_dir / "spool", region=region)
    if setting in ("", "local"):
        return LocalBlobStore(data_dir / "blobs")
    return LocalBlobStore(Path(setting))


def clear_stale_spool(spool_dir: Path, older_than_s: float = 3600.0) -> int:
    """Remove spool files a crash left behind (uploads cut off mid-way, downloads of a killed worker)."""
    if not spool_dir.is_dir():
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for path in spool_dir.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
