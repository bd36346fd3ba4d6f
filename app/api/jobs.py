"""Ingest jobs: status and progress (chunks embedded / total) of queued uploads."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.api.deps import CallerDep, ContainerDep, job_fields
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import COLLECTION_PATTERN, JobRead
from app.core.errors import NotFound
from app.stores.sql.models import Document, Job
from app.stores.sql.repositories import visible_documents

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES)


class JobDetail(JobRead):
    document_id: str
    collection: str
    kind: str = Field(description="What the job does: 'ingest'.")


class JobPage(BaseModel):
    items: list[JobDetail]


def _detail(job: Job, doc: Document) -> JobDetail:
    return JobDetail(**job_fields(job), document_id=doc.id, collection=doc.collection, kind=job.kind)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(job_id: str, container: ContainerDep, caller: CallerDep) -> JobDetail:
    """A job's status, progress, attempts and error (jobs of documents the caller may read)."""
    caller.require("read")
    stmt = visible_documents(
        select(Job, Document).join(Document, Job.document_id == Document.id), caller.principals, caller.collections
    ).where(Job.id == job_id)
    with container.sessions() as session:
        row = session.execute(stmt).first()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return _detail(*row)


@router.get("", response_model=JobPage)
def list_jobs(
    container: ContainerDep,
    caller: CallerDep,
    status: Literal["queued", "running", "succeeded", "failed"] | None = None,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobPage:
    """Recent jobs, newest first, by status and collection."""
    caller.require("read")
    caller.check_read(collection)
    stmt = visible_documents(
        select(Job, Document).join(Document, Job.document_id == Document.id), caller.principals, caller.collections
    )
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if collection is not None:
        stmt = stmt.where(Document.collection == collection)
    with container.sessions() as session:
        rows = session.execute(stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)).all()
        return JobPage(items=[_detail(job, doc) for job, doc in rows])
