"""Document sources that a collection is synced from (S3 today).

``sync.py`` holds the source-neutral sync (counts, change detection, deletions); each source's SDK is imported
only in its own module (boto3 in ``s3.py``), so the app runs without it until a sync is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.errors import ProviderUnavailable
from app.ingest.sources.sync import SUPPORTED_SUFFIXES, SourceError, SyncReport, SyncService

if TYPE_CHECKING:
    from app.container import Container

__all__ = ["SUPPORTED_SUFFIXES", "SourceError", "SyncReport", "SyncService", "build_s3_sync"]


def build_s3_sync(container: Container) -> SyncService:
    """The S3 sync service over the container's ingest service (one boto3 client; build it once and keep it)."""
    try:
        from app.ingest.sources.s3 import S3Source
    except ImportError as exc:  # boto3 is an optional dependency
        raise ProviderUnavailable(
            "S3 sources need boto3: install 'knowledge-search[production]' (or pip install boto3)"
        ) from exc
    settings = container.settings
    return SyncService(
        container.ingest,
        container.sessions,
        S3Source(region=settings.aws_region),
        max_object_bytes=settings.max_upload_bytes,
        spool_dir=settings.data_dir / "spool",
    )
