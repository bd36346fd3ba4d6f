"""RFC 9457 problem+json for every error the API returns."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import AppError
from app.core.problems import MEDIA_TYPE, problem_response

log = logging.getLogger(__name__)


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field("about:blank", description="A URI reference that identifies the problem type.")
    title: str = Field(..., examples=["Unprocessable content"])
    status: int = Field(..., examples=[422])
    detail: str | None = Field(None, description="What went wrong and what to do about it.")
    instance: str | None = Field(None, description="The request path.")
    errors: list[dict[str, Any]] | None = Field(None, description="Field errors, for validation problems.")


# The audit action of each operation that changes or reveals something; a refusal of any other /v1 operation is
# recorded as "access".
AUDITED_ACTIONS = {
    "upload_document": "ingest",
    "replace_document": "update",
    "update_document": "update",
    "delete_document": "delete",
    "search": "search",
    "chat": "chat",
    "post_key": "key.create",
    "revoke_key": "key.revoke",
    "put_collection": "collection.update",
    "register_source": "source.create",
    "remove_source": "source.delete",
    "start_sync": "sync",
}
# Refused before the operation could record itself: who is calling (401), what it may do (403), what it sent (422).
_REFUSALS = {401, 403, 422}


async def _audit_refusal(request: Request, status: int, title: str) -> None:
    """Record a refused request that its route did not record (it never ran, or failed before its audit)."""
    route = request.scope.get("route")
    name = getattr(route, "name", None)
    if status not in _REFUSALS or not request.url.path.startswith(("/v1/", "/mcp")):
        return
    container = getattr(request.app.state, "container", None)
    if container is None:
        return
    await run_in_threadpool(container.audit.refusal, AUDITED_ACTIONS.get(name or "", "access"), status, title)


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        await _audit_refusal(request, exc.status, exc.title)
        return problem_response(request, exc.status, exc.detail, title=exc.title, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        await _audit_refusal(request, 422, "Unprocessable content")
        return problem_response(request, 422, f"the request is not valid: {summary}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list every method the path has.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem_response(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "an unexpected error occurred; it has been logged")


def problem(code: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI entry of a problem+json answer."""
    return {
        "model": Problem,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        "description": description or HTTPStatus(code).phrase,
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: problem(code) for code in (400, 401, 403, 404, 413, 415, 422)
}


def _allowed_methods(request: Request) -> list[str]:
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods)
