"""Edge dependencies: the container built at start-up and the authenticated caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from app.api.schemas import DocumentRead, JobRead, SourceRead
from app.core.container import Container
from app.core.security import Caller, authenticate
from app.stores.sql.models import Document, Job
from app.stores.vector.base import ChunkFilter, SourcePosition


def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


def get_caller(
    container: Annotated[Container, Depends(get_container)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    return authenticate(container.settings, authorization)


ContainerDep = Annotated[Container, Depends(get_container)]
CallerDep = Annotated[Caller, Depends(get_caller)]


def chunk_filter(caller: Caller, collection: str | None, filters: dict[str, Any]) -> ChunkFilter:
    metadata = {k: (v["in"] if isinstance(v, dict) else v) for k, v in filters.items()}
    return ChunkFilter(collection=collection, metadata=metadata, principals=caller.principals)


def document_read(doc: Document, job: Job | None = None) -> DocumentRead:
    return DocumentRead(
        id=doc.id,
        title=doc.title,
        collection=doc.collection,
        status=doc.status,  # type: ignore[arg-type]
        error=doc.error,
        content_type=doc.content_type,
        metadata=doc.metadata_ or {},
        chunk_count=doc.chunk_count,
        size_bytes=doc.size_bytes,
        filename=doc.filename,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
        job=JobRead(
            id=job.id,
            status=job.status,
            progress_done=job.progress_done,  # type: ignore[arg-type]
            progress_total=job.progress_total,
            attempts=job.attempts,
            error=job.error,
        )
        if job
        else None,
    )


def source_read(source: SourcePosition | dict[str, Any]) -> SourceRead:
    data = source.as_dict() if isinstance(source, SourcePosition) else source
    return SourceRead(**data)
