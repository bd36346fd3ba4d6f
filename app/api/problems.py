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
        await _audit_refusal(request, 422, _TITLES[422])
        return problem_response(request, 422, f"the request is not valid: {summary}", title=_TITLES[422], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list every method the path has.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        title = _TITLES.get(exc.status_code)  # the words AppError uses for the same status
        return problem_response(request, exc.status_code, str(exc.detail), title=title, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "an unexpected error occurred; it has been logged")


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Give every operation of the OpenAPI schema the problems it really answers, with an example of each.

    Operations that declare the bearer security scheme get 401, 403 and 429, those with a request body 400, 413
    and 422; OPERATION_PROBLEMS adds what each one gives besides. FastAPI's generic 422 (HTTPValidationError) is dropped: our 422 is a problem too, and
    only operations with a parameter or body that can fail validation list it.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            replies = operation.setdefault("responses", {})
            for code in [c for c, r in replies.items() if _is_problem(r)]:
                del replies[code]
            problems: dict[int, str | None] = dict.fromkeys((401, 403, 429)) if operation.get("security") else {}
            if "requestBody" in operation:  # a body can be unparsable (400), too large (413) or not valid (422)
                problems.update({400: _BODY_400, 413: None, 422: None})
            if any(_can_fail(p) for p in operation.get("parameters", [])):  # an id or a name of the wrong shape
                problems[422] = None
            problems.update(OPERATION_PROBLEMS.get(operation.get("operationId", ""), {}))
            for code in sorted(problems):
                replies[str(code)] = response(code, problems[code], path)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def response(code: int, detail: str | None = None, instance: str = "/v1/...") -> dict[str, Any]:
    example = {
        "type": "about:blank",
        "title": _TITLES.get(code, HTTPStatus(code).phrase),
        "status": code,
        "detail": detail or EXAMPLES[code],
        "instance": instance,
    }
    return {
        "description": _TITLES.get(code, HTTPStatus(code).phrase),
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}, "example": example}},
        **({"headers": _HEADERS[code]} if code in _HEADERS else {}),
    }


_CONSTRAINTS = {"pattern", "maxLength", "minLength", "minimum", "maximum", "exclusiveMinimum", "enum", "format"}


def _can_fail(parameter: dict[str, Any]) -> bool:
    """A parameter that is required, constrained, or not just any string can be refused with 422."""
    schema = parameter.get("schema", {})
    variants = [schema, *schema.get("anyOf", [])]
    return (parameter.get("in") == "query" and parameter.get("required", False)) or any(
        _CONSTRAINTS & v.keys() or v.get("type") not in (None, "string", "null") for v in variants
    )


def _is_problem(reply: dict[str, Any]) -> bool:
    refs = {str(m.get("schema", {}).get("$ref", "")) for m in reply.get("content", {}).values()}
    return bool(refs & {"#/components/schemas/Problem", "#/components/schemas/HTTPValidationError"})


# Titles as AppError subclasses give them (app.core.errors); validation and routing errors use them too, so a
# status reads the same whoever raised it, and the examples look like the real replies.
_TITLES = {
    400: "Bad request",
    404: "Not found",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    502: "Model provider error",
    503: "Service unavailable",
    504: "Model provider timed out",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "Sent when trying again soon may work."}},
}
EXAMPLES: dict[int, str] = {
    400: "metadata filter key 'a b' is not allowed: use letters, digits, _ . : -",
    401: "missing API key: send 'Authorization: Bearer <key>'",
    403: "this key lacks the 'write' scope",
    404: "collection 'finance' does not exist",
    409: "a source named 'handbook' exists already: remove it first, or choose another name",
    413: "the request body is larger than 1048576 bytes (KS_MAX_BODY_MB); send less",
    415: "send multipart/form-data with a 'file' field, or application/json text; got text/csv",
    422: "the request is not valid: body.query: Field required",
    429: "rate limit of 600 requests per minute reached for this key; retry in 12 s",
    502: "the model provider refused the request: check KS_CHAT_MODEL",
    503: "OpenSearch did not answer (search on 'knowledge-search-chunks'): ConnectionTimeout",
    504: "the model provider did not answer in time",
}
_DOC_404 = "document 7d0c9a2e5b8f4e51 does not exist"
_BODY_400 = "There was an error parsing the body"
_CHUNK_STORE_503 = "OpenSearch did not answer (delete on 'knowledge-search-chunks'): ConnectionTimeout"
# an upload and a replacement take the same body, and can be refused for the same reasons
_UPLOAD_PROBLEMS: dict[int, str | None] = {
    400: "the multipart body needs a 'file' field holding the document",
    404: _DOC_404,
    409: "document 7d0c9a2e5b8f4e51 is changing: replace it once it is indexed",
    413: "the upload is 73400320 bytes; the limit is 52428800 bytes (KS_MAX_UPLOAD_MB)",
    415: None,
    422: "the file is empty: upload a document with some text in it",
    503: None,
}
# Besides those: what each operation (by operationId, the route function's name) answers, with an example
# detail where the generic one would not fit. tests/api/test_openapi.py fails for an operation missing here.
OPERATION_PROBLEMS: dict[str, dict[int, str | None]] = {
    "healthz": {},
    "readyz": {},
    "upload_document": _UPLOAD_PROBLEMS,
    "list_documents": {
        400: "cursor is not valid: pass the next_cursor value from a previous page",
        404: None,
        422: None,
    },
    "get_document": {404: _DOC_404},
    "replace_document": _UPLOAD_PROBLEMS,
    "update_document": {
        404: _DOC_404,
        413: None,
        422: "the request is not valid: body.acl.0: String should match pattern",
        503: None,
    },
    "delete_document": {404: _DOC_404, 503: _CHUNK_STORE_503},
    "get_chunks": {404: _DOC_404, 503: None},
    "get_job": {404: "job 5e1f0b7c2a9d4c33 does not exist"},
    "list_jobs": {404: None, 422: "the request is not valid: query.status: Input should be 'queued', 'running', ..."},
    "search": {400: None, 404: None, 413: None, 422: None, 503: None},
    "chat": {
        400: "model 'gpt-x' is not allowed here; choose one of: us.anthropic.claude-3-5-haiku-20241022-v1:0",
        404: "conversation 2b7e4c1d9f0a4e68 does not exist",
        413: None,
        422: "the request is not valid: body.message: message must contain some text",
        502: None,
        503: None,
        504: None,
    },
    "post_key": {413: None, 422: "the request is not valid: body.scopes.0: Input should be 'read', 'write', ..."},
    "list_keys": {},
    "revoke_key": {404: "API key 9a3e6f2d1c0b4a57 does not exist"},
    "put_collection": {413: None, 422: "the request is not valid: path.name: String should match pattern"},
    "get_audit": {422: "the request is not valid: query.limit: Input should be less than or equal to 1000"},
    "register_source": {
        400: "source names follow the collection rule: letters, digits, '_', '.', '-'",
        409: "a source named 'handbook' exists already: remove it first, or choose another name",
    },
    "list_sources": {},
    "get_source": {404: "source 'handbook' does not exist"},
    "remove_source": {404: "source 'handbook' does not exist", 422: None, 503: _CHUNK_STORE_503},
    "start_sync": {
        404: "source 'handbook' does not exist",
        503: "S3 sources need boto3: install 'knowledge-search[production]' (or pip install boto3)",
    },
    "get_sync": {404: "sync 0f4d8e2b6a1c4b79 of source 'handbook' does not exist", 503: None},
}


def problem(code: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI entry of a problem+json answer, for a route's own `responses=` (document() adds the example)."""
    return response(code) | ({"description": description} if description else {})


# What any operation that checks the caller's key may answer: no or a bad key, a key without the scope (or
# X-On-Behalf-Of without 'impersonate'), and the key's rate limit. Routers declare it; document() adds the rest.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {code: response(code) for code in (401, 403, 429)}


def _allowed_methods(request: Request) -> list[str]:
    # Asks every route whether it would take the path with each method, rather than reading `route.methods`:
    # included routers (FastAPI >= 0.160) carry their routes inside and have no `methods` of their own.
    from starlette.routing import Match

    routes = request.app.router.routes
    return [
        method
        for method in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
