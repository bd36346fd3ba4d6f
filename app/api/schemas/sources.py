"""Sources an admin registers, and their syncs."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.schemas.common import BUCKET_NOT, BUCKET_PATTERN, CollectionName, Principal, aware


class SourceCreate(BaseModel):
    """Where a sync may read, into which collection, readable by whom: an admin decides, once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "hr-handbooks",
                    "bucket": "corp-handbooks",
                    "prefix": "hr/",
                    "collection": "hr",
                    "acl": ["group:hr"],
                }
            ]
        },
    )

    name: CollectionName = Field(description="How keys with the sync scope name this source.")
    kind: Literal["s3"] = "s3"
    bucket: str = Field(
        ...,
        min_length=3,
        max_length=63,
        pattern=BUCKET_PATTERN,
        json_schema_extra={"not": BUCKET_NOT},
        description="An S3 bucket name.",
    )
    prefix: str = Field("", max_length=1024, description="Only keys that start with this; '' for the whole bucket.")
    collection: CollectionName = "default"
    acl: list[Principal] | None = Field(
        None,
        max_length=100,
        description='Principals allowed to read what this source brings in, e.g. ["group:hr"]; null: everyone who '
        "may read the collection. A change applies at the next sync.",
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_rules(cls, v: str) -> str:
        """What the schema says with ``not`` (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)."""
        if v.startswith(("xn--", "sthree-")) or v.endswith(("-s3alias", "--ol-s3", "--x-s3")):
            raise ValueError(
                "a bucket name cannot use the prefixes xn--/sthree- or the suffixes -s3alias/--ol-s3/--x-s3"
            )
        try:
            ipaddress.IPv4Address(v)
        except ValueError:
            return v
        raise ValueError("a bucket name is not an IP address")


class SourceInfo(BaseModel):
    id: str
    name: str
    kind: str
    bucket: str
    prefix: str
    collection: str
    acl: list[str] | None
    created_at: datetime

    _aware = field_validator("created_at")(aware)


class SourceList(BaseModel):
    items: list[SourceInfo]


class SyncCounts(BaseModel):
    scanned: int = Field(description="Supported objects listed under the prefix (other types are skipped).")
    new: int = Field(description="Objects indexed for the first time.")
    modified: int = Field(description="Objects whose content changed: re-indexed.")
    unchanged: int
    deleted: int = Field(description="Documents removed because their object is gone.")
    failed: int = Field(description="Objects that could not be read or indexed (see `errors`).")


class SyncJobRead(BaseModel):
    id: str
    source: str = Field(description="The registered source's name.")
    status: Literal["queued", "running", "succeeded", "failed"] = Field(
        description="'succeeded' also when some objects failed; 'failed' when the prefix could not be listed."
    )
    collection: str
    counts: SyncCounts
    errors: list[str] = Field(description="One line per failed object: 's3://bucket/key: reason' (the first 100).")
    error: str | None = Field(None, description="Why the whole sync failed.")
    created_at: datetime
    finished_at: datetime | None = None

    _aware = field_validator("created_at", "finished_at")(lambda v: aware(v) if v else v)
