"""Chat: answers grounded in the documents, with citations; SSE when stream=true."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from app.api.deps import CallerDep, ContainerDep, chunk_filter
from app.api.problems import PROBLEM_RESPONSES
from app.api.schemas import ChatRequest, ChatResponse
from app.chat.service import ChatEvent

router = APIRouter(prefix="/v1", tags=["chat"], responses=PROBLEM_RESPONSES)


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": 'event: citations\ndata: {"citations": [...]}\n\nevent: delta\ndata: {"text": "..."}\n\n'
                    'event: done\ndata: {"answer": "...", "citations": [...], "usage": {...}}\n\n',
                }
            },
            "description": "JSON, or Server-Sent Events when stream=true.",
        }
    },
)
async def chat(body: ChatRequest, container: ContainerDep, caller: CallerDep):  # type: ignore[no-untyped-def]
    """Ask a question; the answer cites the passages it rests on, or says the documents do not cover it."""
    caller.require("read")
    flt = chunk_filter(caller, body.collection, body.filters)
    if body.stream:
        # Retrieval happens before the first byte, so errors (unknown conversation, bad filter) are still
        # ordinary problem+json replies.
        events = await run_in_threadpool(
            _start_stream,
            container.chat.stream(
                body.message, flt, conversation_id=body.conversation_id, top_k=body.top_k, owner=caller.principals
            ),
        )
        return EventSourceResponse(_sse(events), ping=15)
    answer = await run_in_threadpool(
        container.chat.ask,
        body.message,
        flt,
        conversation_id=body.conversation_id,
        top_k=body.top_k,
        owner=caller.principals,
    )
    return ChatResponse(
        answer=answer.answer,
        citations=[c.as_dict() for c in answer.citations],  # type: ignore[misc]
        conversation_id=answer.conversation_id,
        model=answer.model,
        usage=answer.usage.as_dict(),
        grounded=answer.grounded,
    )


def _start_stream(events: Iterator[ChatEvent]) -> Iterator[ChatEvent]:
    first = next(events)

    def chained() -> Iterator[ChatEvent]:
        yield first
        yield from events

    return chained()


def _sse(events: Iterator[ChatEvent]) -> Iterator[dict[str, str]]:
    for event in events:
        yield {"event": event.kind, "data": json.dumps(event.data, ensure_ascii=False)}
