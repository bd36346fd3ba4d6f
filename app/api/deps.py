"""Edge dependencies: the container built at start-up, the authenticated caller, a read session per request,
and the conversions from service results to API schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.access.caller import ANONYMOUS_LOCAL, Caller, identify
from app.api.schemas import DocumentRead, JobRead, SourceRead
from app.container import Container
from app.core import context
from app.core.errors import Forbidden, Unauthorized
from app.core.patterns import COLLECTION_PATTERN, ID_PATTERN

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.stores.sql.models import Document, Job
    from app.stores.vector.base import SourcePosition

# Declares the bearer scheme in the OpenAPI schema (Swagger's "Authorize", generated clients' token) for every
# operation that depends on get_caller. auto_error=False: authenticate() reads the header and words the 401 itself.
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    description="An API key: KS_ADMIN_KEY, or a key made with POST /v1/keys or `knowledge-search keys create`.",
    auto_error=False,
)


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def authenticate(
    container: Container,
    authorization: str | None,
    on_behalf_of: str | None,
    client_addr: str | None,
    host: str | None = None,
) -> Caller:
    """The caller of a request (REST or MCP alike): the key, then its rate limit, then impersonation.

    A failed key check is rate limited by client address, so guessing keys (or flooding the audit trail with
    refusals) is as limited as using one. Without any key (the loopback development mode) only requests
    addressed to a loopback name are served: a web page the developer opens cannot reach the service through a
    DNS name it rebinds to 127.0.0.1."""
    try:
        caller = identify(container.settings, container.sessions, authorization)
    except Unauthorized:
        container.rate_limiter.check(f"client:{client_addr or 'unknown'}")
        raise
    if caller is ANONYMOUS_LOCAL and host is not None and _hostname(host) not in LOOPBACK_HOSTS:
        raise Forbidden(
            f"without an API key the service answers only to localhost, not to {host!r}: "
            "create a key (knowledge-search keys create) or set KS_ADMIN_KEY"
        )
    ctx = context.current()
    if ctx is not None:
        ctx.key_id = caller.key_id
    container.rate_limiter.check(caller.key_id)
    return caller.acting_for(on_behalf_of)


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
    client = request.client.host if request.client else None
    return authenticate(container, authorization, x_on_behalf_of, client, request.headers.get("host"))


def _hostname(host: str) -> str:
    """The Host header without its port ("[::1]:8000" -> "[::1]")."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0].lower()


def read_session(container: Annotated[Container, Depends(get_container)]) -> Iterator[Session]:
    """One session for the reads of a request, closed when the reply is sent; writes open their own units of
    work inside the services (see app.stores.sql.repositories)."""
    with container.sessions() as session:
        yield session


ContainerDep = Annotated[Container, Depends(get_container)]
CallerDep = Annotated[Caller, Depends(get_caller)]
# A path segment naming something the service made (a document, job, key, sync): any other shape is 422, and
# never reaches a database.
# A registered source's name: named as a collection is.
SourceName = Annotated[str, Path(pattern=COLLECTION_PATTERN, examples=["hr-handbooks"])]
IdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=64, examples=["3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b"])]
if TYPE_CHECKING:
    ReadSessionDep = Annotated[Session, Depends(read_session)]
else:  # the edge never names SQLAlchemy at run time
    ReadSessionDep = Annotated[object, Depends(read_session)]


def require_schema(container: ContainerDep) -> None:
    """Before every /v1 call: 503 naming `knowledge-search migrate` while the database is behind this code
    (checked once it is current: no cost then)."""
    container.schema.check()


def document_read(doc: Document, job: Job | None = None) -> DocumentRead:
    return DocumentRead(
        id=doc.id,
        title=doc.title,
        collection=doc.collection,
        status=doc.status,
        error=doc.error,
        content_type=doc.content_type,
        metadata=doc.metadata_ or {},
        acl=doc.acl,
        external_id=doc.external_id,
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
    data = source if isinstance(source, dict) else source.as_dict()
    return SourceRead(**data)
