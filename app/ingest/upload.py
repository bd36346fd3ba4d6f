"""What arrives to become (or change) a document, and what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.core.sentinel import UNSET, Unset
from app.ingest.payload import Payload
from app.stores.sql.models import Document, Job

# external_id schemes that belong to the service's own sources: a client may not write into them, so no upload
# can plant a document that a sync would later mistake for its own.
RESERVED_EXTERNAL_SCHEMES = ("s3://", "file://")


@dataclass(slots=True)
class Upload:
    payload: Payload
    collection: str = "default"
    filename: str | None = None
    declared_type: str | None = None
    title: str | None = None
    # UNSET: the upload does not say; a new document then gets {} and public access, a replaced one keeps its own.
    # None / [] as acl: readable by everyone who may read the collection.
    metadata: dict[str, Any] | Unset = UNSET
    acl: list[str] | None | Unset = UNSET
    # The client's (or the source's) own id for the document: an upload with the same one replaces it.
    external_id: str | None = None

    @classmethod
    def of_bytes(cls, data: bytes, **fields: Any) -> Upload:
        return cls(Payload.of_bytes(data), **fields)

    def new_acl(self) -> list[str] | None:
        return None if isinstance(self.acl, Unset) else (list(dict.fromkeys(self.acl)) if self.acl else None)

    def new_metadata(self) -> dict[str, Any]:
        return {} if isinstance(self.metadata, Unset) else dict(self.metadata)


class Outcome(StrEnum):
    CREATED = "created"  # a new document, indexed (wait) — HTTP 201
    QUEUED = "queued"  # recorded, its ingest job waits for a worker (wait=false) — HTTP 202
    REPLACED = "replaced"  # an existing document changed in place: content, access list, metadata or title — 200
    UNCHANGED = "unchanged"  # the same document was already there — 200


@dataclass(slots=True)
class Upserted:
    outcome: Outcome
    document: Document
    job: Job | None = None
    # REPLACED only: whether the text changed (False: only the access list, metadata or title did).
    content_changed: bool = False


def same_readers(a: list[str] | None, b: list[str] | None) -> bool:
    return set(a or ()) == set(b or ())
