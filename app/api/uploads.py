"""Reading an upload from an HTTP request: a multipart file, or JSON text. Nothing here decides anything about
documents; the ingest service does (``IngestService.upsert``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from app.api.schemas import COLLECTION_PATTERN, Principal, TextDocumentCreate
from app.core.config import Settings
from app.core.errors import BadInput, PayloadTooLarge, Unprocessable, UnsupportedMediaType
from app.core.metadata import check_metadata
from app.core.patterns import COLLECTION_RULE, PRINCIPAL_RULE, is_collection
from app.core.sentinel import UNSET
from app.ingest.payload import Payload
from app.ingest.upload import Upload

_ACL = TypeAdapter(list[Principal])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "minLength": 1,  # an empty file is refused (422): the schema says so too
                            "description": "Text, Markdown, HTML, PDF (text layer) or DOCX.",
                        },
                        "collection": {"type": "string", "default": "default", "pattern": COLLECTION_PATTERN},
                        "title": {"type": "string", "maxLength": 512},
                        "metadata": {"type": "string", "description": 'A JSON object, e.g. {"dept": "hr"}.'},
                        "acl": {
                            "type": "string",
                            "description": 'A JSON list of principals, e.g. ["group:hr"]; [] for everyone. '
                            "Omitted on a replacement: the document keeps its own.",
                        },
                        "external_id": {
                            "type": "string",
                            "maxLength": 256,
                            "description": "Your id: an upload with the same external_id replaces the document.",
                        },
                    },
                }
            },
            # a shared component (added in app.main), so generated clients get one model for both operations
            "application/json": {"schema": {"$ref": "#/components/schemas/TextDocumentCreate"}},
        },
    }
}


async def read_upload(request: Request, settings: Settings) -> Upload:
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(f"the upload is {declared} bytes; the limit is {limit} bytes (KS_MAX_UPLOAD_MB)")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await _json_upload(request, limit)
    if content_type == "multipart/form-data":
        return await _form_upload(request, limit, settings.data_dir / "spool")
    raise UnsupportedMediaType(
        f"send multipart/form-data with a 'file' field, or application/json text; got {content_type or 'nothing'}"
    )


async def _json_upload(request: Request, limit: int) -> Upload:
    raw = await request.body()
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is {len(raw)} bytes; the limit is {limit} bytes (KS_MAX_UPLOAD_MB)")
    try:
        body = TextDocumentCreate.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise Unprocessable(f"the JSON body is not valid: {where}: {first.get('msg')}") from exc
    markdown = body.format == "markdown"
    given = body.model_fields_set
    return Upload.of_bytes(
        body.text.replace("\x00", "").encode("utf-8"),  # text, not a binary file: a NUL in it is noise
        collection=body.collection,
        filename="document.md" if markdown else "document.txt",
        declared_type="text/markdown" if markdown else "text/plain",
        title=body.title,
        metadata=body.metadata if "metadata" in given else UNSET,
        acl=(body.acl or None) if "acl" in given else UNSET,
        external_id=body.external_id,
    )


async def _form_upload(request: Request, limit: int, spool_dir: Path) -> Upload:
    # Starlette keeps the first MiB of a file part in memory and the rest in a temporary file; we copy it block
    # by block into our spool (hashing as we go), so a large upload never sits in memory whole.
    form = await request.form(max_files=1, max_fields=10)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise BadInput("the multipart body needs a 'file' field holding the document")
    collection = str(form.get("collection") or "default")
    if not is_collection(collection):
        raise BadInput(COLLECTION_RULE)
    title = form.get("title")
    metadata = _json_field(form.get("metadata"), "metadata", dict, '{"dept": "hr"}')
    if metadata is not None:
        try:
            check_metadata(metadata)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from exc
    acl = _acl(form.get("acl"))
    payload = await run_in_threadpool(Payload.spool, file.file, spool_dir, limit)
    return Upload(
        payload,
        collection=collection,
        filename=file.filename,
        declared_type=file.content_type,
        title=str(title)[:512] if title else None,
        metadata=UNSET if metadata is None else metadata,
        acl=acl,
        external_id=_external_id(form.get("external_id")),
    )


def _external_id(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    value = str(raw)
    if len(value) > 256:
        raise BadInput("external_id is longer than 256 characters")
    return value


def _json_field(raw: Any, name: str, kind: type, example: str) -> Any:
    if raw is None or raw == "":
        return None
    try:
        # NaN and Infinity are not JSON: refuse them here rather than store what every JSON function rejects
        value = json.loads(str(raw), parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name} is not valid JSON ({exc.msg} at position {exc.pos}): send e.g. {example}") from exc
    except ValueError as exc:
        raise Unprocessable(f"{name}: {exc}") from exc
    if not isinstance(value, kind):
        raise BadInput(f"{name} must be a JSON {'object' if kind is dict else 'list'}, like {example}")
    return value


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number; send a finite number, a string or null")


def _acl(raw: Any) -> list[str] | None | Any:
    if raw is None:
        return UNSET
    value = _json_field(raw, "acl", list, '["group:hr", "user:alice"]')
    if value is None:
        return None
    try:
        return _ACL.validate_python(value) or None
    except ValidationError as exc:
        raise BadInput(f"acl entries: {PRINCIPAL_RULE}") from exc
