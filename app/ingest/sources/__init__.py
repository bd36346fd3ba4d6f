"""Document sources that a collection is synced from (S3 today).

``sync.py`` holds the source-neutral sync (counts, change detection, deletions); each source's SDK is imported
only in its own module (boto3 in ``s3.py``), so the app runs without it until a sync is asked for.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.errors import ProviderUnavailable
from app.ingest.service import IngestService
from app.ingest.sources.registry import SourceRegistry
from app.ingest.sources.sync import SourceError, SyncReport, SyncService

__all__ = ["SourceError", "SourceRegistry", "SyncReport", "SyncService", "build_s3_sync"]


def build_s3_sync(ingest: IngestService, sessions: sessionmaker[Session], settings: Settings) -> SyncService:
    """The S3 sync service over the ingest service (one boto3 client; build it once and keep it)."""
    try:
        from app.ingest.sources.s3 import S3Source
    except ImportError as exc:  # boto3 is an optional dependency
        raise ProviderUnavailable(
            "S3 sources need boto3: install 'knowledge-search[production]' (or pip install boto3)"
        ) from exc
    return SyncService(
        ingest,
        sessions,
        S3Source(region=settings.aws_region),
        max_object_bytes=settings.max_upload_bytes,
        spool_dir=settings.data_dir / "spool",
    )
