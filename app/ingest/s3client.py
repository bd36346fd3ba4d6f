"""The one S3 client recipe, for the sources that sync from S3 and the blob store that keeps queued uploads there.

boto3 is imported only when a client is asked for: the embedded default runs without it.
"""

from __future__ import annotations

from typing import Any

# total_max_attempts counts the first call too (botocore's "max_attempts" counts only the retries).
S3_ATTEMPTS = 5
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 60.0


def s3_client(region: str | None = None) -> Any:
    """A client from a fresh session, so it reads the environment now (endpoint override, credentials chain).
    Clients are thread-safe: build one and share it."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": S3_ATTEMPTS},
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
    )
    return boto3.session.Session().client("s3", config=config)
