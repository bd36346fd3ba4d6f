"""An upload's bytes, without holding a large file in memory.

A ``Payload`` knows its size, its first bytes (enough to tell the format) and, once read through, its SHA-256.
Small ones stay in memory; anything larger is spooled block by block to a file, so a 200 MB upload costs one
block of memory, not 200 MB. Parsers read it through ``open()``.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from app.core.errors import PayloadTooLarge

BLOCK = 1 << 20  # read and write in 1 MiB blocks
HEAD = 64 * 1024  # bytes kept for format detection
IN_MEMORY = 1 << 20  # payloads up to this size are not spooled


class Payload:
    def __init__(
        self,
        *,
        size: int,
        head: bytes,
        sha256: str | None = None,
        data: bytes | None = None,
        path: Path | None = None,
        owned: bool = False,
    ) -> None:
        if (data is None) == (path is None):
            raise ValueError("a payload is either bytes or a file")
        self.size, self.head, self.sha256 = size, head, sha256
        self._data, self.path = data, path
        self._owned = owned  # a spool file of ours: discard() removes it

    # --- construction ------------------------------------------------------------------------------
    @classmethod
    def of_bytes(cls, data: bytes) -> Payload:
        return cls(size=len(data), head=data[:HEAD], sha256=hashlib.sha256(data).hexdigest(), data=data)

    @classmethod
    def of_file(cls, path: Path, *, hash_it: bool = True) -> Payload:
        """A file that stays where it is (the caller owns it), hashed block by block."""
        with open(path, "rb") as fh:
            head = fh.read(HEAD)
            digest = None
            if hash_it:
                h = hashlib.sha256(head)
                while block := fh.read(BLOCK):
                    h.update(block)
                digest = h.hexdigest()
        return cls(size=path.stat().st_size, head=head, sha256=digest, path=path)

    @classmethod
    def spool(cls, source: BinaryIO, spool_dir: Path, limit: int) -> Payload:
        """Copy ``source`` block by block (hashing as it goes); 413 as soon as it passes ``limit`` bytes."""
        h, size = hashlib.sha256(), 0
        first = source.read(IN_MEMORY + 1)
        if len(first) <= IN_MEMORY:
            if len(first) > limit:
                raise _too_large(limit)
            return cls.of_bytes(first)
        spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=spool_dir, suffix=".upload")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                block = first
                while block:
                    size += len(block)
                    if size > limit:
                        raise _too_large(limit)
                    h.update(block)
                    out.write(block)
                    block = source.read(BLOCK)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return cls(size=size, head=first[:HEAD], sha256=h.hexdigest(), path=path, owned=True)

    # --- reading -----------------------------------------------------------------------------------
    @property
    def in_memory(self) -> bool:
        return self._data is not None

    def open(self) -> BinaryIO:
        if self._data is not None:
            return io.BytesIO(self._data)
        assert self.path is not None
        return open(self.path, "rb")

    def read(self) -> bytes:
        """All of it, for the formats whose parser needs the whole file (HTML, Markdown, DOCX)."""
        if self._data is not None:
            return self._data
        assert self.path is not None
        return self.path.read_bytes()

    def is_blank(self) -> bool:
        return self.size == 0 or (self.size <= len(self.head) and not self.head.strip())

    # --- ownership ---------------------------------------------------------------------------------
    def take_file(self) -> Path | None:
        """Hand our spool file over (the blob store moves it into place); None when it is not ours to give."""
        if not self._owned or self.path is None:
            return None
        self._owned = False
        return self.path

    def discard(self) -> None:
        """Remove our spool file, if it is still ours."""
        if self._owned and self.path is not None:
            self.path.unlink(missing_ok=True)
            self._owned = False

    def __enter__(self) -> Payload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the file is larger than the limit of {limit} bytes (KS_MAX_UPLOAD_MB)")
