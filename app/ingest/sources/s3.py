"""S3 as a document source: list the objects under a prefix, fetch their bodies. boto3 is imported only here.

boto3 is blocking: call these methods from sync code or a thread. The client is built once with the standard
credential chain (environment, profile, IAM role), ``standard`` retries and explicit timeouts; a custom endpoint
(MinIO, a test server) comes from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` as boto3 reads them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from app.core.errors import PayloadTooLarge
from app.ingest.parsers import SUPPORTED_SUFFIXES
from app.ingest.payload import Payload
from app.ingest.s3client import s3_client
from app.ingest.sources.sync import SourceError, SourceObject

_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Source:
    name = "s3"

    def __init__(self, *, region: str | None = None, client: Any = None) -> None:
        self._client = client or s3_client(region)

    @staticmethod
    def uri(bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    @staticmethod
    def supported(key: str) -> bool:
        """A document we can parse; "folder" markers (keys ending in '/') and other types are skipped."""
        return not key.endswith("/") and PurePosixPath(key).suffix.lower() in SUPPORTED_SUFFIXES

    def list(self, bucket: str, prefix: str) -> list[SourceObject]:
        """Every supported object under the prefix, in key order (the whole listing, or an error)."""
        found: list[SourceObject] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if self.supported(key):
                        found.append(SourceObject(key=key, etag=_etag(item.get("ETag")), size=int(item.get("Size", 0))))
        except (BotoCoreError, ClientError) as exc:
            raise _translate(
                exc, f"listing {self.uri(bucket, prefix)}", bucket, "s3:ListBucket", f"arn:aws:s3:::{bucket}"
            ) from exc
        return found

    def fetch(self, bucket: str, key: str, max_bytes: int, spool_dir: Path) -> tuple[Payload, str]:
        """The object's body (spooled to disk when large, never whole in memory) and the ETag of the version
        read; the caller discards the payload."""
        try:
            reply = self._client.get_object(Bucket=bucket, Key=key)
            size = int(reply.get("ContentLength") or 0)
            if size > max_bytes:
                reply["Body"].close()
                raise PayloadTooLarge(f"the object is {size} bytes; the limit is {max_bytes} (KS_MAX_UPLOAD_MB)")
            with contextlib.closing(reply["Body"]) as body:
                data = Payload.spool(body, spool_dir, max_bytes)
        except (BotoCoreError, ClientError) as exc:
            raise _translate(
                exc, f"reading {self.uri(bucket, key)}", bucket, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"
            ) from exc
        return data, _etag(reply.get("ETag"))


def _etag(raw: str | None) -> str:
    return (raw or "").strip('"')


def _translate(exc: Exception, doing: str, bucket: str, action: str, resource: str) -> SourceError:
    """A botocore error as a sentence that says what to fix."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return SourceError(
            f"no AWS credentials for {doing}: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or run with an IAM role"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return SourceError(f"S3 did not answer while {doing} ({exc}); check the network or AWS_ENDPOINT_URL_S3")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        if code in _MISSING_BUCKET:
            return SourceError(f"bucket {bucket!r} does not exist")
        if code in _MISSING_KEY:
            return SourceError("the object was deleted after it was listed")
        if code in _DENIED:
            return SourceError(f"access denied while {doing} ({code}): grant {action} on {resource}")
        return SourceError(f"S3 error while {doing}: {code}: {message}")
    return SourceError(f"S3 error while {doing}: {type(exc).__name__}: {exc}")
