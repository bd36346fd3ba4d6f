"""Chat: answers grounded in the documents, with citations; SSE when stream=true."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from app.access.audit import AuditLog, Pending
from app.access.caller import Caller
from app.api.deps import CallerDep, ContainerDep
from app.api.metrics import chat_timer
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import ChatRequest, ChatResponse, filter_values
from app.chat.service import ChatEvent
from app.core.errors import AppError

router = APIRouter(prefix="/v1", tags=["chat"], responses=PROBLEM_RESPONSES)


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    # one event of the stream: citations first, then deltas, then done (or error, a problem)
                    "schema": {
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": {"type": "string", "enum": ["citations", "delta", "done", "error"]},
                            "data": {"type": "string", "description": "A JSON object."},
                        },
                    },
                    "example": 'event: citations\ndata: {"citations": [...]}\n\nevent: delta\ndata: {"text": "..."}\n\n'
                    'event: done\ndata: {"answer": "...", "citations": [...], "usage": {...}}\n\n',
                }
            },
            "description": "JSON, or Server-Sent Events when stream=true.",
        }
    },
)
async def chat(
    body: ChatRequest, container: ContainerDep, caller: CallerDep, request: Request
) -> ChatResponse | EventSourceResponse:
    """Ask a question; the answer cites the passages it rests on, or says the documents do not cover it."""
    # async: it may stream (SSE); every blocking step (retrieval, the model, the audit) runs in the thread pool.
    timer = chat_timer(request, container.settings.chat_provider, stream=body.stream)
    audit = container.audit
    flt = caller.reading(body.collection, filter_values(body.filters))
    if body.stream:
        # Retrieval happens before the first byte, so errors (unknown conversation, bad filter) are still
        # ordinary problem+json replies.
        events = await run_in_threadpool(
            _start_stream,
            timer.watch(
                container.chat.stream(
                    body.message,
                    flt,
                    conversation_id=body.conversation_id,
                    top_k=body.top_k,
                    caller=caller,
                    model=body.model,
                )
            ),
        )
        return EventSourceResponse(
            _sse(events, lambda done, status: _audit_stream(audit, caller, done, status)), ping=15
        )
    record = Pending()
    try:
        answer = await run_in_threadpool(
            container.chat.ask,
            body.message,
            flt,
            conversation_id=body.conversation_id,
            top_k=body.top_k,
            caller=caller,
            model=body.model,
        )
        record.targets = [answer.conversation_id, *[c.chunk_id for c in answer.citations]]
    except BaseException as exc:
        record.failed(exc)
        raise
    finally:  # off the event loop: the audit writes to the database
        await run_in_threadpool(audit.record, caller.key_id, caller.principals, "chat", record)
    timer.finished(answer.model, answer.usage)
    return ChatResponse(
        answer=answer.answer,
        citations=[c.as_dict() for c in answer.citations],
        conversation_id=answer.conversation_id,
        model=answer.model,
        usage=answer.usage.as_dict(),
        grounded=answer.grounded,
        guardrail_intervened=answer.intervened,
    )


def _start_stream(events: Iterator[ChatEvent]) -> Iterator[ChatEvent]:
    first = next(events)

    def chained() -> Iterator[ChatEvent]:
        yield first
        yield from events

    return chained()


def _sse(events: Iterator[ChatEvent], finished: Callable[[dict, int], None]) -> Iterator[dict[str, str]]:
    """Relay events; a provider failure after the first byte becomes an `error` event with a problem body."""
    try:
        for event in events:
            if event.kind == "done":
                finished(event.data, 200)
            yield {"event": event.kind, "data": json.dumps(event.data, ensure_ascii=False)}
    except AppError as exc:
        finished({}, exc.status)
        problem = {"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.detail}
        yield {"event": "error", "data": json.dumps(problem, ensure_ascii=False)}


def _audit_stream(audit: AuditLog, caller: Caller, done: dict, status: int) -> None:
    targets = [done.get("conversation_id", ""), *[c["chunk_id"] for c in done.get("citations", [])]]
    audit.record(caller.key_id, caller.principals, "chat", Pending(targets=targets, status=status))
