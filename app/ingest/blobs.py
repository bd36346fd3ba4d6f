"""Where uploaded originals wait for their ingest job. Names are document ids, never client file names."""

from __future__ import annotations

import os
import re
from pathlib import Path

_SAFE_ID = re.compile(r"^[0-9a-f]{32}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, document_id: str) -> Path:
        if not _SAFE_ID.match(document_id):
            raise ValueError("blob names are document ids")
        return self.root / document_id

    def put(self, document_id: str, data: bytes) -> None:
        path = self._path(document_id)
        tmp = path.with_suffix(".part")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def get(self, document_id: str) -> bytes:
        return self._path(document_id).read_bytes()

    def exists(self, document_id: str) -> bool:
        return self._path(document_id).exists()

    def delete(self, document_id: str) -> None:
        self._path(document_id).unlink(missing_ok=True)
