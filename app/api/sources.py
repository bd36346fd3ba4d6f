"""Sources: sync an S3 prefix into a collection in the background, and follow the sync job.

Sync jobs are stored in the metadata database (``sync_jobs``), so any instance behind a gateway can answer
``GET`` for a sync another instance runs. The sync itself runs in a thread of the instance that accepted it: if
that process stops, its job stays ``running``; start another sync (it picks up where the index is).
"""

from __future__ import annotations

import ipaddress
import threading
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.deps import CallerDep, ContainerDep
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import COLLECTION_PATTERN, Principal
from app.container import Container
from app.core.errors import NotFound
from app.ingest.sources import SyncService, build_s3_sync
from app.stores.sql.models import SyncJob

router = APIRouter(prefix="/v1/sources", tags=["sources"], responses=PROBLEM_RESPONSES)
_LOCK = threading.Lock()

BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class S3SyncCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"bucket": "corp-handbooks", "prefix": "hr/", "collection": "hr"}]},
    )

    bucket: str = Field(..., min_length=3, max_length=63, pattern=BUCKET_PATTERN, description="An S3 bucket name.")
    prefix: Annotated[str, Field(max_length=1024, description="Only keys that start with this; '' for all.")] = ""
    collection: Annotated[str, Field(pattern=COLLECTION_PATTERN)] = "default"
    acl: list[Principal] | None = Field(
        None,
        description='Principals allowed to read the new documents, e.g. ["group:hr"]; null: the collection\'s readers.',
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_rules(cls, v: str) -> str:
        """The naming rules a pattern cannot say (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)."""
        if ".." in v or ".-" in v or "-." in v:
            raise ValueError("a bucket name has no '..', '.-' or '-.'")
        if v.startswith(("xn--", "sthree-")) or v.endswith(("-s3alias", "--ol-s3", "--x-s3")):
            raise ValueError(
                "a bucket name cannot use the prefixes xn--/sthree- or the suffixes -s3alias/--ol-s3/--x-s3"
            )
        try:
            ipaddress.IPv4Address(v)
        except ValueError:
            return v
        raise ValueError("a bucket name is not an IP address")


class SyncCounts(BaseModel):
    scanned: int = Field(description="Supported objects listed under the prefix (other types are skipped).")
    new: int = Field(description="Objects indexed for the first time.")
    modified: int = Field(description="Objects whose content changed: re-indexed.")
    unchanged: int
    deleted: int = Field(description="Documents removed because their object is gone.")
    failed: int = Field(description="Objects that could not be read or indexed (see `errors`).")


class SyncJobRead(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"] = Field(
        description="'succeeded' also when some objects failed; 'failed' when the prefix could not be listed."
    )
    source: str
    bucket: str
    prefix: str
    collection: str
    counts: SyncCounts
    errors: list[str] = Field(description="One line per failed object: 's3://bucket/key: reason' (the first 100).")
    error: str | None = Field(None, description="Why the whole sync failed.")
    created_at: datetime
    finished_at: datetime | None = None


@router.post("/s3/sync", status_code=status.HTTP_202_ACCEPTED, response_model=SyncJobRead)
def start_s3_sync(body: S3SyncCreate, request: Request, container: ContainerDep, caller: CallerDep) -> SyncJobRead:
    """Sync an S3 prefix into a collection in the background; follow it with GET /v1/sources/s3/sync/{id}."""
    caller.require("write")
    with container.audit.action(caller, "sync", [f"s3://{body.bucket}/{body.prefix}"]) as audit:
        caller.check_write(body.collection)
        service = _service(request, container)
        job = service.start(body.bucket, body.prefix, body.collection, key_id=caller.key_id)
        audit.targets.insert(0, job.id)
        audit.status = status.HTTP_202_ACCEPTED
        threading.Thread(
            target=service.run,
            args=(job.id,),
            kwargs={"acl": body.acl or None, "principals": caller.principals},
            name=f"s3-sync-{job.id[:8]}",
            daemon=True,
        ).start()
        return _read(job)


@router.get("/s3/sync/{sync_id}", response_model=SyncJobRead)
def get_s3_sync(sync_id: str, request: Request, container: ContainerDep, caller: CallerDep) -> SyncJobRead:
    """A sync job's status, counts and failures."""
    caller.require("read")
    job = _service(request, container).get(sync_id)
    if job is None or not caller.can_see_collection(job.collection):
        raise NotFound(f"sync job {sync_id} does not exist")
    return _read(job)


def _service(request: Request, container: Container) -> SyncService:
    """One S3 sync service (one boto3 client) per app, built on first use."""
    state = request.app.state
    with _LOCK:
        service: SyncService | None = getattr(state, "s3_sync", None)
        if service is None:
            service = state.s3_sync = build_s3_sync(container)
    return service


def _read(job: SyncJob) -> SyncJobRead:
    return SyncJobRead(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        source=job.source,
        bucket=job.bucket,
        prefix=job.prefix,
        collection=job.collection,
        counts=SyncCounts(**{k: int((job.counts or {}).get(k, 0)) for k in SyncCounts.model_fields}),
        errors=list(job.errors or []),
        error=job.error,
        created_at=_aware(job.created_at),
        finished_at=_aware(job.finished_at) if job.finished_at else None,
    )


def _aware(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=UTC)
