"""Edge dependencies: the container built at start-up and the authenticated caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.access.caller import Caller, authenticate
from app.api.schemas import DocumentRead, JobRead, SourceRead
from app.container import Container
from app.stores.sql.models import Document, Job
from app.stores.vector.base import ChunkFilter, SourcePosition

# Declares the bearer scheme in the OpenAPI schema (Swagger's "Authorize", generated clients' token) for every
# operation that depends on get_caller. auto_error=False: authenticate() reads the header and words the 401 itself.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description="An API key: KS_ADMIN_KEY, or a key made with POST /v1/keys or `knowledge-search keys create`.",
    auto_error=False,
)


def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


def get_caller(
    request: Request,
    container: Annotated[Container, Depends(get_container)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_on_behalf_of: Annotated[
        str | None,
        Header(description="Principals to act for (keys with the 'impersonate' scope), e.g. user:bob,group:sales"),
    ] = None,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Caller:
    caller = authenticate(container.settings, container.sessions, authorization, x_on_behalf_of)
    request.state.key_id = caller.key_id
    container.rate_limiter.check(caller.key_id)
    return caller


ContainerDep = Annotated[Container, Depends(get_container)]
CallerDep = Annotated[Caller, Depends(get_caller)]


def chunk_filter(caller: Caller, collection: str | None, filters: dict[str, Any]) -> ChunkFilter:
    """What the caller may retrieve: its collections and principals go into every store query."""
    caller.check_read(collection)
    metadata = {k: (v["in"] if isinstance(v, dict) else v) for k, v in filters.items()}
    return ChunkFilter(
        collection=collection, collections=caller.collections, metadata=metadata, principals=caller.principals
    )


def document_read(doc: Document, job: Job | None = None) -> DocumentRead:
    return DocumentRead(
        id=doc.id,
        title=doc.title,
        collection=doc.collection,
        status=doc.status,  # type: ignore[arg-type]
        error=doc.error,
        content_type=doc.content_type,
        metadata=doc.metadata_ or {},
        acl=doc.acl,
        redactions=doc.redactions,
        chunk_count=doc.chunk_count,
        size_bytes=doc.size_bytes,
        filename=doc.filename,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
        job=JobRead(**job_fields(job)) if job else None,
    )


def job_fields(job: Job) -> dict[str, Any]:
    """A job as the API shows it (documents' `job`, and /v1/jobs)."""
    return {
        "id": job.id,
        "status": job.status,
        "progress_done": job.progress_done,
        "progress_total": job.progress_total,
        "attempts": job.attempts,
        "error": job.error,
    }


def source_read(source: SourcePosition | dict[str, Any]) -> SourceRead:
    data = source.as_dict() if isinstance(source, SourcePosition) else source
    return SourceRead(**data)
