"""Documents: upload (multipart file or JSON text), list, get, chunks, update, delete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from app.access.caller import Caller
from app.api.deps import CallerDep, ContainerDep, chunk_filter, document_read, source_read
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import (
    COLLECTION_PATTERN,
    ChunkList,
    ChunkRead,
    DocumentPage,
    DocumentPatch,
    DocumentRead,
    Principal,
    TextDocumentCreate,
)
from app.container import Container
from app.core.config import Settings
from app.core.errors import (
    BadInput,
    Conflict,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from app.ingest.payload import Payload
from app.ingest.service import Submitted, Upload
from app.stores.sql.models import Document
from app.stores.sql.repositories import DocumentRepository, JobRepository
from app.stores.vector.base import UNSET

router = APIRouter(prefix="/v1/documents", tags=["documents"], responses=PROBLEM_RESPONSES)
_ACL = TypeAdapter(list[Principal])

_UPLOAD_BODY = {
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
                            "description": "Text, Markdown, HTML, PDF (text layer) or DOCX.",
                        },
                        "collection": {"type": "string", "default": "default", "pattern": COLLECTION_PATTERN},
                        "title": {"type": "string"},
                        "metadata": {"type": "string", "description": 'A JSON object, e.g. {"dept": "hr"}.'},
                        "acl": {"type": "string", "description": 'A JSON list of principals, e.g. ["group:hr"].'},
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


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentRead,
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": DocumentRead, "description": "The same content was already in the collection."},
        202: {"model": DocumentRead, "description": "Accepted (wait=false): the document is queued."},
    },
)
async def upload_document(
    request: Request,
    response: Response,
    container: ContainerDep,
    caller: CallerDep,
    wait: Annotated[bool, Query(description="Reply once the document is searchable.")] = True,
) -> DocumentRead:
    """Upload a document (multipart `file`, or JSON text) and index it."""
    caller.require("write")
    with container.audit.action(caller, "ingest") as audit:
        upload = await _read_upload(request, container.settings)
        with upload.payload:  # a spool file not taken by the blob store goes when the request ends
            caller.check_write(upload.collection)
            existing = upload.external_id and await run_in_threadpool(_by_external_id, container, caller, upload)
            if existing:
                audit.targets = [existing]
                doc = await run_in_threadpool(container.ingest.replace, existing, upload)
                response.status_code = audit.status = status.HTTP_200_OK
                return document_read(doc)
            submitted: Submitted = await run_in_threadpool(container.ingest.submit, upload)
            audit.targets = [submitted.document.id]
            if not submitted.created:
                if not await run_in_threadpool(_visible, container, caller, submitted.document.id):
                    raise Conflict("the same content already exists in this collection under another access list")
                response.status_code = audit.status = status.HTTP_200_OK
                return document_read(submitted.document, submitted.job)
            job = submitted.job
            assert job is not None
            if not wait:
                if container.worker is not None:
                    container.worker.notify()
                response.status_code = audit.status = status.HTTP_202_ACCEPTED
                return document_read(submitted.document, job)
            doc = await run_in_threadpool(container.ingest.run_job, job.id)
            if doc.status == "queued":  # a transient failure: the job is queued again with a backoff
                raise StoreUnavailable(
                    f"the document could not be indexed yet ({doc.error}); it stays queued and is retried "
                    f"automatically: follow GET /v1/jobs/{job.id}",
                    headers={"Retry-After": "5"},
                    extra={"document_id": doc.id, "job_id": job.id},
                )
            if doc.status == "failed":
                # Nothing half-made stays behind: the client fixes the file and uploads again.
                await run_in_threadpool(container.ingest.delete, doc.id)
                raise Unprocessable(doc.error or "the document could not be indexed")
            audit.status = status.HTTP_201_CREATED
            with container.sessions() as session:
                return document_read(DocumentRepository(session).get(doc.id) or doc, JobRepository(session).get(job.id))


@router.get("", response_model=DocumentPage)
def list_documents(
    container: ContainerDep,
    caller: CallerDep,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> DocumentPage:
    """List the documents the caller may read, newest first, a page at a time."""
    caller.require("read")
    caller.check_read(collection)
    with container.sessions() as session:
        docs, next_cursor = DocumentRepository(session).page(
            collection=collection,
            limit=limit,
            cursor=cursor,
            principals=caller.principals,
            collections=caller.collections,
        )
        return DocumentPage(items=[document_read(d) for d in docs], next_cursor=next_cursor)


@router.get("/{document_id}", response_model=DocumentRead)
def get_document(document_id: str, container: ContainerDep, caller: CallerDep) -> DocumentRead:
    """Get one document with its status and its latest ingest job."""
    caller.require("read")
    with container.sessions() as session:
        doc = _readable(session, caller, document_id)
        return document_read(doc, JobRepository(session).latest_for(doc.id))


@router.get("/{document_id}/chunks", response_model=ChunkList)
def get_chunks(document_id: str, container: ContainerDep, caller: CallerDep) -> ChunkList:
    """The document's chunks in order, with where each came from."""
    caller.require("read")
    with container.sessions() as session:
        _readable(session, caller, document_id)
    chunks = container.store.get_chunks(document_id, chunk_filter(caller, None, {}))
    return ChunkList(
        items=[
            ChunkRead(
                chunk_id=c.chunk_id,
                document_id=c.document_id,
                ordinal=c.ordinal,
                text=c.text,
                source=source_read(c.source),
            )
            for c in chunks
        ]
    )


@router.put("/{document_id}", response_model=DocumentRead, openapi_extra=_UPLOAD_BODY)
async def replace_document(
    document_id: str, request: Request, container: ContainerDep, caller: CallerDep
) -> DocumentRead:
    """Replace a document's content (same body as upload): searches see the old version until the new one is
    fully indexed, then only the new one."""
    caller.require("write")
    with container.audit.action(caller, "update", [document_id]):
        doc = await run_in_threadpool(_readable_in_session, container, caller, document_id)
        caller.check_write(doc.collection)
        upload = await _read_upload(request, container.settings)
        with upload.payload:
            return document_read(await run_in_threadpool(container.ingest.replace, document_id, upload))


@router.patch("/{document_id}", response_model=DocumentRead)
def update_document(document_id: str, body: DocumentPatch, container: ContainerDep, caller: CallerDep) -> DocumentRead:
    """Change a document's title, metadata or access list (`acl`); its chunks follow at once."""
    caller.require("write")
    with container.audit.action(caller, "update", [document_id]):
        with container.sessions() as session:
            caller.check_write(_readable(session, caller, document_id).collection)
        given = body.model_fields_set
        doc = container.ingest.update(
            document_id,
            title=body.title,
            metadata=body.metadata if "metadata" in given else None,
            acl=body.acl if "acl" in given else UNSET,
        )
        return document_read(doc)


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_document(document_id: str, container: ContainerDep, caller: CallerDep) -> Response:
    """Delete a document and every chunk of it."""
    caller.require("write")
    with container.audit.action(caller, "delete", [document_id]) as audit:
        with container.sessions() as session:
            caller.check_write(_readable(session, caller, document_id).collection)
        container.ingest.delete(document_id)
        audit.status = status.HTTP_204_NO_CONTENT
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _readable(session: Any, caller: Caller, document_id: str) -> Document:
    doc = DocumentRepository(session).visible(document_id, principals=caller.principals, collections=caller.collections)
    if doc is None:
        raise NotFound(f"document {document_id} does not exist")
    return doc


def _readable_in_session(container: Container, caller: Caller, document_id: str) -> Document:
    with container.sessions() as session:
        return _readable(session, caller, document_id)


def _by_external_id(container: Container, caller: Caller, upload: Upload) -> str | None:
    """The id of the readable document this upload replaces (same collection and external_id), if any."""
    with container.sessions() as session:
        doc = DocumentRepository(session).by_external_id(upload.collection, upload.external_id or "")
        if doc is None:
            return None
        return _readable(session, caller, doc.id).id


def _visible(container: Container, caller: Caller, document_id: str) -> bool:
    with container.sessions() as session:
        return (
            DocumentRepository(session).visible(
                document_id, principals=caller.principals, collections=caller.collections
            )
            is not None
        )


# --- reading the upload -------------------------------------------------------------------------------
async def _read_upload(request: Request, settings: Settings) -> Upload:
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
    return Upload.of_bytes(
        body.text.encode("utf-8"),
        collection=body.collection,
        filename="document.md" if markdown else "document.txt",
        declared_type="text/markdown" if markdown else "text/plain",
        title=body.title,
        metadata=body.metadata,
        acl=body.acl or None,
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
    if not re.match(COLLECTION_PATTERN, collection):
        raise BadInput("collection names use letters, digits, '_', '.', '-' (up to 128, starting with a letter/digit)")
    title = form.get("title")
    metadata = _parse_json_field(form.get("metadata"), "metadata", dict, '{"dept": "hr"}') or {}
    acl, external_id = _parse_acl(form.get("acl")), _external_id(form.get("external_id"))
    payload = await run_in_threadpool(Payload.spool, file.file, spool_dir, limit)
    return Upload(
        payload,
        collection=collection,
        filename=file.filename,
        declared_type=file.content_type,
        title=str(title)[:512] if title else None,
        metadata=metadata,
        acl=acl,
        external_id=external_id,
    )


def _external_id(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    value = str(raw)
    if len(value) > 256:
        raise BadInput("external_id is longer than 256 characters")
    return value


def _parse_json_field(raw: Any, name: str, kind: type, example: str) -> Any:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name} is not valid JSON ({exc.msg} at position {exc.pos}): send e.g. {example}") from exc
    if not isinstance(value, kind):
        raise BadInput(f"{name} must be a JSON {'object' if kind is dict else 'list'}, like {example}")
    return value


def _parse_acl(raw: Any) -> list[str] | None:
    value = _parse_json_field(raw, "acl", list, '["group:hr", "user:alice"]')
    if value is None:
        return None
    try:
        return _ACL.validate_python(value) or None
    except ValidationError as exc:
        raise BadInput("acl entries are principals like 'user:alice' or 'group:hr' (kind:name)") from exc
