"""What the service knows about the request being served, for any code that runs while serving it.

The HTTP middleware sets it at the start of each request; thread-pool calls and SSE iteration copy the context,
and because the value is one mutable object, what a route learns (the key id, that the audit has recorded the
request) is seen by the error handlers that run after it. Outside a request (CLI, workers) it is None.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    request_id: str
    # The client's address: the TCP peer, or what a trusted proxy put in X-Forwarded-For.
    client_addr: str | None = None
    key_id: str | None = None
    # Set once the audit trail has an event for this request, so a refusal is never recorded twice.
    audited: bool = False


request_context: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)


def current() -> RequestContext | None:
    return request_context.get()
