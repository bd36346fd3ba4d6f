"""MCP (Model Context Protocol) at /mcp: AI agents search, read and ask through the same code as REST clients.

Streamable HTTP, stateless and with JSON replies: each POST stands alone, so any replica answers and nothing is
kept between calls. The HTTP request to /mcp goes through ``get_caller`` like every REST request (bearer key,
X-On-Behalf-Of, rate limit), so a missing or bad key gets the REST API's 401 problem before MCP sees it. Each
tool then calls the REST route function that does the same thing, so scopes, the access filters inside every
store query and the audit trail are the REST API's own: an agent never sees what its key may not read.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.access.caller import Caller
from app.api import chat as chat_routes
from app.api import documents as document_routes
from app.api import search as search_routes
from app.api.deps import CallerDep, read_session
from app.api.schemas import (
    COLLECTION_PATTERN,
    ID_PATTERN,
    ChatRequest,
    ChatResponse,
    ChunkRead,
    DocumentPage,
    DocumentRead,
    SearchRequest,
    SearchResponse,
)
from app.api.schemas import Filters as RestFilters
from app.container import Container
from app.core.errors import AppError

PATH = "/mcp"
INSTRUCTIONS = """\
Company knowledge search. `search` finds passages (hybrid keyword + vector, English and Japanese) with their
document id, title, position in the source and score; `read_document` returns a whole document's chunks in
order; `list_documents` shows what is there; `ask` answers a question from the documents with [n] citations,
or says they do not cover it. You only ever see documents your key may read. Cite document titles and ids."""
_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

Collection = Annotated[
    str | None, Field(description="Only this collection; default: every collection the key may read.")
]
Filters = Annotated[
    RestFilters | None,
    Field(description='Metadata filters: {"dept": "hr"} matches equal values, {"year": {"in": [2025, 2026]}} any.'),
]


class DocumentChunks(BaseModel):
    document: DocumentRead
    chunks: list[ChunkRead] = Field(description="The document's chunks in order, each with where it came from.")
    next_first: int | None = Field(description="Pass as `first` to read on; null when this is the end.")


def build_server() -> MCPServer:
    """The MCP server and its tools (nothing runs until the app's lifespan starts its session manager)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    server = MCPServer("knowledge-search", instructions=INSTRUCTIONS, version="0.1.0")
    # MCPServer calls logging.basicConfig; logging belongs to the service (app.core.observability).
    root.handlers[:], root.level = handlers, level

    def tool(fn: _F) -> _F:
        # the docstring, without its indentation, is what the agent's model reads about the tool
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""), annotations=_READ_ONLY)
        return fn

    @tool
    async def search(
        ctx: Context,
        query: Annotated[str, Field(description="What to look for, in words (English or Japanese).")],
        collection: Collection = None,
        filters: Filters = None,
        top_k: Annotated[int, Field(ge=1, le=100, description="How many passages to return.")] = 8,
        mode: Annotated[
            Literal["hybrid", "semantic", "keyword"],
            Field(description="hybrid (default): keyword and vector; semantic: meaning; keyword: exact words."),
        ] = "hybrid",
    ) -> SearchResponse:
        """Find the passages that best answer a query: text, score, document id and title, and where in the
        source each one is (page, heading path, character offsets)."""
        container, caller, _ = _edge(ctx)
        body = _model(SearchRequest, query=query, collection=collection, filters=filters or {}, top_k=top_k, mode=mode)
        return await _run(run_in_threadpool(search_routes.search, body, container, caller))

    @tool
    async def read_document(
        ctx: Context,
        document_id: Annotated[
            str, Field(pattern=ID_PATTERN, description="A document id from search or list_documents.")
        ],
        first: Annotated[int, Field(ge=0, description="Ordinal of the first chunk to return.")] = 0,
        limit: Annotated[int, Field(ge=1, le=200, description="How many chunks to return.")] = 50,
    ) -> DocumentChunks:
        """Read a document: its title, collection and metadata, and its chunks in order, `limit` at a time (a
        long document would not fit in a model's context at once)."""
        container, caller, _ = _edge(ctx)
        document, chunks = await _run(run_in_threadpool(_document_and_chunks, container, caller, document_id))
        end = first + limit
        return DocumentChunks(
            document=document, chunks=chunks[first:end], next_first=end if end < len(chunks) else None
        )

    @tool
    async def list_documents(
        ctx: Context,
        collection: Collection = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Documents per page.")] = 50,
        cursor: Annotated[str | None, Field(max_length=512, description="next_cursor of the previous page.")] = None,
    ) -> DocumentPage:
        """List the documents this key may read, newest first, a page at a time."""
        container, caller, _ = _edge(ctx)
        if collection is not None:
            _model(_CollectionName, collection=collection)
        return await _run(run_in_threadpool(_documents, container, caller, collection, limit, cursor))

    @tool
    async def ask(
        ctx: Context,
        question: Annotated[str, Field(description="A question to answer from the documents.")],
        collection: Collection = None,
        filters: Filters = None,
        conversation_id: Annotated[
            str | None, Field(max_length=64, description="Continue an earlier conversation (from a previous ask).")
        ] = None,
    ) -> ChatResponse:
        """Answer a question from the documents: the answer cites its passages as [n] (see `citations`), and
        `grounded` is false when the documents do not cover the question."""
        container, caller, request = _edge(ctx)
        body = _model(
            ChatRequest, message=question, collection=collection, filters=filters or {}, conversation_id=conversation_id
        )
        answer = await _run(chat_routes.chat(body, container, caller, request))
        assert isinstance(answer, ChatResponse)  # stream=False: a whole answer, never an event stream
        return answer

    return server


# The REST routes read through one session per request (deps.read_session); the tools open it the same way.
_read_session = contextmanager(read_session)


def _document_and_chunks(
    container: Container, caller: Caller, document_id: str
) -> tuple[DocumentRead, list[ChunkRead]]:
    with _read_session(container) as session:
        document = document_routes.get_document(document_id, session, container, caller)
        return document, document_routes.get_chunks(document_id, session, container, caller).items


def _documents(
    container: Container, caller: Caller, collection: str | None, limit: int, cursor: str | None
) -> DocumentPage:
    with _read_session(container) as session:
        return document_routes.list_documents(session, container, caller, collection, limit, cursor)


class _CollectionName(BaseModel):
    collection: str = Field(pattern=COLLECTION_PATTERN)


def _edge(ctx: Context) -> tuple[Container, Caller, Request]:
    """The container and the caller that get_caller authenticated for this HTTP request (see ``endpoint``)."""
    request = ctx.request_context.request
    if not isinstance(request, Request):  # only the HTTP endpoint below serves these tools
        raise ToolError("this server answers over HTTP only")
    return request.app.state.container, request.state.caller, request


def _model(model: type[_T], **values: Any) -> _T:
    """The REST request model, validated as the REST API validates it: the same limits, the same words."""
    try:
        return model(**values)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()[:5])
        raise ToolError(f"422 Unprocessable content: {where}") from None


async def _run(call: Awaitable[_T]) -> _T:
    """Errors become tool errors that read like the REST API's problems (status, title, detail)."""
    try:
        return await call
    except AppError as exc:
        raise ToolError(f"{exc.status} {exc.title}: {exc.detail}") from None


# --- the HTTP endpoint -----------------------------------------------------------------------------------------
router = APIRouter(include_in_schema=False)


class _ToMCP(Response):
    """Hands the request, untouched (its body not read), to the MCP transport."""

    def __init__(self, sessions: StreamableHTTPSessionManager) -> None:
        super().__init__()
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._sessions.handle_request(scope, receive, send)


# POST only: stateless, the server has nothing to push on a GET stream (which would stay open for nothing) and no
# session for a DELETE to end; both get 405, as the transport's specification allows.
@router.post(PATH)
async def endpoint(request: Request, caller: CallerDep) -> Response:
    """MCP over streamable HTTP, for the caller get_caller authenticated (its key, its principals)."""
    request.state.caller = caller  # the tools find it on the request the transport hands them
    return _ToMCP(request.app.state.mcp_sessions)


def install(app: FastAPI) -> None:
    app.state.mcp_server = build_server()
    app.include_router(router)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """Run the MCP session manager for the app's lifetime (a manager runs once, so each lifespan makes one)."""
    server: MCPServer = app.state.mcp_server
    # The SDK's Host/Origin allow-list guards local servers without authentication against DNS rebinding. Here
    # every request passes get_caller first, exactly as the REST API's do, and a fixed list of host names would
    # only refuse the names a gateway gives us.
    server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    app.state.mcp_sessions = server.session_manager
    async with server.session_manager.run():
        yield
