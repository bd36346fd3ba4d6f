"""Documents: upload (multipart file or JSON text), list, get, chunks, replace, update, delete.

Upload and replace read their body as it streams in, so they are ``async def``; everything blocking they do (the
ingest service, the audit) runs in the thread pool. The other routes are plain ``def``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from app.access.audit import Pending
from app.access.caller import Caller
from app.api.deps import CallerDep, ContainerDep, IdPath, ReadSessionDep, document_read, source_read
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import (
    COLLECTION_PATTERN,
    ChunkList,
    ChunkRead,
    DocumentPage,
    DocumentPatch,
    DocumentRead,
)
from app.api.uploads import UPLOAD_BODY, read_upload
from app.container import Container
from app.core.sentinel import UNSET
from app.ingest.upload import Outcome, Upserted

router = APIRouter(prefix="/v1/documents", tags=["documents"], responses=PROBLEM_RESPONSES)

STATUS_OF = {
    Outcome.CREATED: status.HTTP_201_CREATED,
    Outcome.QUEUED: status.HTTP_202_ACCEPTED,
    Outcome.REPLACED: status.HTTP_200_OK,
    Outcome.UNCHANGED: status.HTTP_200_OK,
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentRead,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {
            "model": DocumentRead,
            "description": "The document was already there (unchanged), or, for an "
            "external_id you used before, it was replaced in place.",
        },
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
    """Upload a document (multipart `file`, or JSON text) and index it; the same `external_id` replaces it."""
    return await _upsert(request, response, container, caller, "ingest", wait=wait)


@router.put("/{document_id}", response_model=DocumentRead, openapi_extra=UPLOAD_BODY)
async def replace_document(
    document_id: IdPath, request: Request, response: Response, container: ContainerDep, caller: CallerDep
) -> DocumentRead:
    """Replace a document's content (same body as upload; its collection and external_id stay): searches see the
    old version until the new one is fully indexed, then only the new one."""
    return await _upsert(request, response, container, caller, "update", document_id=document_id)


async def _upsert(
    request: Request,
    response: Response,
    container: Container,
    caller: Caller,
    action: str,
    *,
    wait: bool = True,
    document_id: str | None = None,
) -> DocumentRead:
    record = Pending(targets=[document_id] if document_id else [])
    try:
        upload = await read_upload(request, container.settings)
        with upload.payload:  # a spool file not taken by the blob store goes when the request ends
            result: Upserted = await run_in_threadpool(
                container.ingest.upsert, upload, caller, wait=wait, document_id=document_id
            )
        record.targets = [result.document.id]
        response.status_code = record.status = STATUS_OF[result.outcome]
    except BaseException as exc:
        record.failed(exc)
        raise
    finally:  # off the event loop: the audit writes to the database
        await run_in_threadpool(container.audit.record, caller.key_id, caller.principals, action, record)
    if result.outcome == Outcome.QUEUED and container.worker is not None:
        container.worker.notify()
    return document_read(result.document, result.job).model_copy(update={"outcome": result.outcome.value})


@router.get("", response_model=DocumentPage)
def list_documents(
    session: ReadSessionDep,
    container: ContainerDep,
    caller: CallerDep,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> DocumentPage:
    """List the documents the caller may read, newest first, a page at a time."""
    docs, next_cursor = container.catalog.documents(session, caller, collection=collection, limit=limit, cursor=cursor)
    return DocumentPage(items=[document_read(d) for d in docs], next_cursor=next_cursor)


@router.get("/{document_id}", response_model=DocumentRead)
def get_document(
    document_id: IdPath, session: ReadSessionDep, container: ContainerDep, caller: CallerDep
) -> DocumentRead:
    """Get one document with its status and its latest ingest job."""
    return document_read(*container.catalog.document(session, caller, document_id))


@router.get("/{document_id}/chunks", response_model=ChunkList)
def get_chunks(document_id: IdPath, session: ReadSessionDep, container: ContainerDep, caller: CallerDep) -> ChunkList:
    """The document's chunks in order, with where each came from."""
    chunks = container.catalog.chunks(session, caller, document_id)
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


@router.patch("/{document_id}", response_model=DocumentRead)
def update_document(
    document_id: IdPath, body: DocumentPatch, container: ContainerDep, caller: CallerDep
) -> DocumentRead:
    """Change a document's title, metadata or access list (`acl`); its chunks follow at once."""
    with container.audit.action(caller, "update", [document_id]):
        given = body.model_fields_set
        doc = container.ingest.update(
            document_id,
            caller,
            title=body.title,
            metadata=body.metadata if "metadata" in given else None,
            acl=body.acl if "acl" in given else UNSET,
        )
        return document_read(doc)


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_document(document_id: IdPath, container: ContainerDep, caller: CallerDep) -> Response:
    """Delete a document and every chunk of it."""
    with container.audit.action(caller, "delete", [document_id]) as audit:
        container.ingest.delete(document_id, caller)
        audit.status = status.HTTP_204_NO_CONTENT
    return Response(status_code=status.HTTP_204_NO_CONTENT)
