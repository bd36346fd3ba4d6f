"""Sources: an admin registers where documents are synced from (bucket, prefix, collection, access list); keys
with the ``sync`` scope start syncs of registered sources by name, and follow them.

Sync jobs are stored in the metadata database, so any instance behind a gateway answers ``GET`` for a sync
another instance runs. The sync itself runs in a thread of the instance that accepted it: if that process stops,
its job stays ``running``; start another sync (it picks up where the index is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CallerDep, ContainerDep, IdPath, SourceName
from app.api.problems import PROBLEM_RESPONSES, problem
from app.api.schemas import SourceCreate, SourceInfo, SourceList, SyncCounts, SyncJobRead
from app.core.errors import NotFound

if TYPE_CHECKING:
    from app.stores.sql.models import SyncJob

router = APIRouter(prefix="/v1/sources", tags=["sources"], responses=PROBLEM_RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SourceInfo,
    responses={409: problem(409, "A source of this name exists already.")},
)
def register_source(body: SourceCreate, container: ContainerDep, caller: CallerDep) -> SourceInfo:
    """Register a source (admin): which bucket and prefix may be synced, into which collection, readable by whom."""
    with container.audit.action(caller, "source.create", [body.name]) as audit:
        source = container.sources.register(
            caller,
            name=body.name,
            kind=body.kind,
            bucket=body.bucket,
            prefix=body.prefix,
            collection=body.collection,
            acl=body.acl,
        )
        audit.status = status.HTTP_201_CREATED
        return SourceInfo.model_validate(source, from_attributes=True)


@router.get("", response_model=SourceList)
def list_sources(container: ContainerDep, caller: CallerDep) -> SourceList:
    """The registered sources this key may sync (admin or `sync` scope)."""
    return SourceList(items=[SourceInfo.model_validate(s, from_attributes=True) for s in container.sources.all(caller)])


@router.get("/{name}", response_model=SourceInfo)
def get_source(name: SourceName, container: ContainerDep, caller: CallerDep) -> SourceInfo:
    """One registered source (admin or `sync` scope)."""
    return SourceInfo.model_validate(container.sources.get(caller, name), from_attributes=True)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def remove_source(
    name: SourceName,
    container: ContainerDep,
    caller: CallerDep,
    keep_documents: bool = Query(False, description="Keep the documents it brought in (they stay as they are)."),
) -> Response:
    """Remove a source (admin); its documents are deleted with it unless `keep_documents`."""
    with container.audit.action(caller, "source.delete", [name]) as audit:
        source = container.sources.remove(caller, name)
        if not keep_documents:
            container.ingest.delete_origin(source.origin)
        audit.status = status.HTTP_204_NO_CONTENT
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/sync", status_code=status.HTTP_202_ACCEPTED, response_model=SyncJobRead)
def start_sync(name: SourceName, container: ContainerDep, caller: CallerDep) -> SyncJobRead:
    """Sync a registered source into its collection in the background (admin or `sync` scope); follow it with
    GET /v1/sources/{name}/syncs/{id}."""
    with container.audit.action(caller, "sync", [name]) as audit:
        source = container.sources.get(caller, name)
        service = container.s3_sync()
        job = service.start(source, key_id=caller.key_id)
        audit.targets.insert(0, job.id)
        audit.status = status.HTTP_202_ACCEPTED
        container.sync_in_background(job.id)
        return _read(job, source.name)


@router.get("/{name}/syncs/{sync_id}", response_model=SyncJobRead)
def get_sync(name: SourceName, sync_id: IdPath, container: ContainerDep, caller: CallerDep) -> SyncJobRead:
    """A sync's status, counts and failures (admin or `sync` scope)."""
    source = container.sources.get(caller, name)
    job = container.s3_sync().get(sync_id)
    if job is None or job.source_id != source.id:
        raise NotFound(f"sync {sync_id} of source {name!r} does not exist")
    return _read(job, source.name)


def _read(job: SyncJob, source_name: str) -> SyncJobRead:
    return SyncJobRead(
        id=job.id,
        source=source_name,
        status=job.status,
        collection=job.collection,
        counts=SyncCounts(**{k: int((job.counts or {}).get(k, 0)) for k in SyncCounts.model_fields}),
        errors=list(job.errors or []),
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )
