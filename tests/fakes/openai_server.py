"""A wire-level fake of an OpenAI-compatible chat server (vLLM, Ollama, llama.cpp): ``POST
/v1/chat/completions``, whole or as server-sent events (``data: {...}`` lines, then ``data: [DONE]``).

Route for ``script``: ``chat``. Errors come back as ``{"error": {"message", "type", "code"}}`` with the
Act's status and headers (e.g. ``Retry-After`` on 429).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from tests.fakes import Act, BaseHandler, FakeServer, Recorded, grounded_answer, pieces, tokens


def error(status: int, message: str, *, kind: str = "invalid_request_error", **kw: Any) -> Act:
    return Act(status=status, error=kind, message=message, **kw)


def reply(text: str, finish_reason: str = "stop") -> Act:
    return Act(text=text, stop_reason=finish_reason)


def slow(seconds: float) -> Act:
    return Act(delay=seconds)


class _Handler(BaseHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if path != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        body = self.read_json()
        self.fake.record(Recorded("chat", path, body, {k.lower(): v for k, v in self.headers.items()}))
        act = self.fake.next_act("chat")
        if act.delay:
            self.fake.sleep(act.delay)
        if act.error and not act.stream_error:
            payload = {"error": {"message": act.message, "type": act.error, "code": act.status}}
            self.send_json(act.status, payload, act.headers)
            return
        user = [m["content"] for m in body["messages"] if m["role"] == "user"]
        text = act.text if act.text is not None else grounded_answer(user[-1] if user else "")
        finish = act.stop_reason or "stop"
        prompt_tokens = sum(len(tokens(m["content"])) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": max(1, len(tokens(text))),
            "total_tokens": prompt_tokens + max(1, len(tokens(text))),
        }
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            self.send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        self.start_chunked("text/event-stream", {"Cache-Control": "no-cache"})
        chunk = {**base, "object": "chat.completion.chunk"}
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        self._event({**chunk, "choices": [first]})
        for i, piece in enumerate(pieces(text)):
            self.fake.sleep(self.fake.stream_interval)
            self._event({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            if act.stream_error and i == 0:
                self._event({"error": {"message": act.message or act.stream_error, "type": act.stream_error}})
                self.end_chunked()
                return
        self._event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**chunk, "choices": [], "usage": usage})
        self.send_chunk(b"data: [DONE]\n\n")
        self.end_chunked()

    def _event(self, payload: dict[str, Any]) -> None:
        self.send_chunk(f"data: {json.dumps(payload)}\n\n".encode())


class FakeOpenAI(FakeServer):
    handler = _Handler

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"
