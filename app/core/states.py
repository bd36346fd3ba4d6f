"""The states a document, an ingest job and a sync move through: one definition, used by the stores, the
services and the API schemas alike. ``StrEnum`` members compare equal to their values, so rows written as
plain strings (and JSON replies) stay as they were."""

from __future__ import annotations

from enum import StrEnum


class DocumentStatus(StrEnum):
    QUEUED = "queued"  # recorded, waiting for its ingest job
    PROCESSING = "processing"  # being parsed, chunked and embedded
    INDEXED = "indexed"  # searchable
    FAILED = "failed"  # the file could not be indexed; ``error`` says why
    DELETING = "deleting"  # gone for every reader; its chunks and row are being removed


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobKind(StrEnum):
    INGEST = "ingest"  # a new document, run by a worker or inline (wait=true)
    UPDATE = "update"  # a content replacement, run inline by the request that asked for it


class SyncStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # also when some objects failed (see the counts)
    FAILED = "failed"  # the source could not be listed


class Scope(StrEnum):
    READ = "read"  # search, chat, list and read documents
    WRITE = "write"  # upload, replace, change and delete documents
    SYNC = "sync"  # start syncs of the sources an admin registered
    ADMIN = "admin"  # everything, in every collection
    IMPERSONATE = "impersonate"  # act for an end user with X-On-Behalf-Of
