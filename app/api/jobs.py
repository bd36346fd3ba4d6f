"""Ingest jobs: status and progress (chunks embedded / total) of uploads and replacements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import CallerDep, ContainerDep, IdPath, ReadSessionDep, job_fields
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import COLLECTION_PATTERN, JobDetail, JobPage

if TYPE_CHECKING:
    from app.stores.sql.models import Document, Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES)


def _detail(job: Job, doc: Document) -> JobDetail:
    return JobDetail(**job_fields(job), document_id=doc.id, collection=doc.collection, kind=job.kind)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(job_id: IdPath, session: ReadSessionDep, container: ContainerDep, caller: CallerDep) -> JobDetail:
    """A job's status, progress, attempts and error (jobs of documents the caller may read)."""
    return _detail(*container.catalog.job(session, caller, job_id))


@router.get("", response_model=JobPage)
def list_jobs(
    session: ReadSessionDep,
    container: ContainerDep,
    caller: CallerDep,
    status: Literal["queued", "running", "succeeded", "failed"] | None = None,
    collection: Annotated[str | None, Query(pattern=COLLECTION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobPage:
    """Recent jobs, newest first, by status and collection."""
    rows = container.catalog.jobs(session, caller, status=status, collection=collection, limit=limit)
    return JobPage(items=[_detail(job, doc) for job, doc in rows])
