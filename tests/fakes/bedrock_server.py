"""A wire-level fake of bedrock-runtime (Converse, ConverseStream, InvokeModel) and bedrock-agent-runtime
(Rerank), for the real boto3 client pointed at it with AWS_ENDPOINT_URL_BEDROCK_RUNTIME /
AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME.

Routes (``FakeBedrock.script`` keys): ``converse``, ``converse-stream``, ``invoke``, ``rerank``. Errors are
sent as Bedrock sends them (status, ``x-amzn-ErrorType`` header, ``{"message": ...}`` body); ConverseStream
answers in the AWS event-stream binary framing, one flushed HTTP chunk per event.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes import (
    Act,
    BaseHandler,
    FakeServer,
    Recorded,
    grounded_answer,
    hashed_embedding,
    pieces,
    similarity,
    tokens,
)

_STATUS = {
    "ThrottlingException": 429,
    "AccessDeniedException": 403,
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
}


def error(code: str, message: str = "", *, status: int | None = None, **kw: Any) -> Act:
    return Act(status=status or _STATUS.get(code, 400), error=code, message=message or code, **kw)


def throttle(times: int = 1) -> list[Act]:
    return [error("ThrottlingException", "Too many requests, please wait before trying again.")] * times


def access_denied() -> Act:
    return error(
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    )


def validation(message: str = "The provided model identifier is invalid.") -> Act:
    return error("ValidationException", message)


def guardrail(text: str = "Sorry, I can't answer that.") -> Act:
    return Act(text=text, stop_reason="guardrail_intervened")


def reply(text: str, stop_reason: str = "end_turn") -> Act:
    return Act(text=text, stop_reason=stop_reason)


def slow(seconds: float) -> Act:
    return Act(delay=seconds)


# --- AWS event-stream framing -------------------------------------------------------------------------
def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack(">B", len(n)) + n + struct.pack(">BH", 7, len(v)) + v  # type 7: string


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC), headers, payload, CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return event_frame(headers, json.dumps(payload).encode())


def exception_event(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return event_frame(headers, json.dumps({"message": message}).encode())


class _Handler(BaseHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) == 3 and parts[0] == "model" and parts[2] in ("converse", "converse-stream", "invoke"):
            route, model_id = parts[2], parts[1]
        elif parts == ["rerank"]:
            route, model_id = "rerank", ""
        else:
            self.send_json(404, {"message": f"no route {path}"}, {"x-amzn-ErrorType": "UnknownOperationException"})
            return
        body = self.read_json()
        self.fake.record(Recorded(route, unquote(path), body, {k.lower(): v for k, v in self.headers.items()}))
        act = self.fake.next_act(route)
        if act.delay:
            self.fake.sleep(act.delay)
        if act.error and not act.stream_error:
            headers = {"x-amzn-ErrorType": f"{act.error}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
            self.send_json(act.status, {"message": act.message}, {**headers, **act.headers})
            return
        getattr(self, "_" + route.replace("-", "_"))(model_id, body, act)

    def _answer(self, body: dict[str, Any], act: Act) -> tuple[str, str, dict[str, int]]:
        user = [
            block.get("text", "") for m in body.get("messages", []) if m["role"] == "user" for block in m["content"]
        ]
        text = act.text if act.text is not None else grounded_answer(user[-1] if user else "")
        seen = " ".join(b.get("text", "") for b in body.get("system", [])) + " ".join(user)
        usage = {"inputTokens": len(tokens(seen)), "outputTokens": max(1, len(tokens(text)))}
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
        return text, act.stop_reason or "end_turn", usage

    def _converse(self, model_id: str, body: dict[str, Any], act: Act) -> None:
        text, stop, usage = self._answer(body, act)
        self.send_json(
            200,
            {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 42},
            },
            {"x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _converse_stream(self, model_id: str, body: dict[str, Any], act: Act) -> None:
        text, stop, usage = self._answer(body, act)
        self.start_chunked("application/vnd.amazon.eventstream", {"x-amzn-RequestId": str(uuid.uuid4())})
        self.send_chunk(event("messageStart", {"role": "assistant"}))
        for i, piece in enumerate(pieces(text)):
            self.fake.sleep(self.fake.stream_interval)
            self.send_chunk(event("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0}))
            if act.stream_error and i == 0:
                self.send_chunk(exception_event(act.stream_error, act.message or act.stream_error))
                self.end_chunked()
                return
        self.fake.sleep(self.fake.stream_interval)
        self.send_chunk(event("contentBlockStop", {"contentBlockIndex": 0}))
        self.send_chunk(event("messageStop", {"stopReason": stop}))
        self.send_chunk(event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
        self.end_chunked()

    def _invoke(self, model_id: str, body: dict[str, Any], act: Act) -> None:
        if "titan-embed-text" in model_id:
            text = body.get("inputText", "")
            dimension = body.get("dimensions", 1024 if "v2" in model_id else 1536)
            if not text or dimension not in (256, 512, 1024, 1536):
                self._validation("inputText must be non-empty and dimensions one of 256, 512, 1024")
                return
            count = len(tokens(text))
            payload: dict[str, Any] = {
                "embedding": hashed_embedding(text, dimension, normalize=body.get("normalize", True)),
                "inputTextTokenCount": count,
            }
        elif "cohere.embed" in model_id:
            texts = body.get("texts", [])
            if not texts or len(texts) > 96 or body.get("input_type") not in ("search_document", "search_query"):
                self._validation("texts must hold 1 to 96 strings and input_type must be set")
                return
            count = sum(len(tokens(t)) for t in texts)
            payload = {
                "embeddings": [hashed_embedding(t, 1024, normalize=False) for t in texts],
                "id": str(uuid.uuid4()),
                "texts": texts,
                "response_type": "embeddings_floats",
            }
        else:
            self._validation(f"The provided model identifier is invalid: {model_id}")
            return
        self.send_json(
            200,
            payload,
            {"X-Amzn-Bedrock-Input-Token-Count": str(count), "X-Amzn-Bedrock-Invocation-Latency": "12"},
        )

    def _rerank(self, model_id: str, body: dict[str, Any], act: Act) -> None:
        query = body["queries"][0]["textQuery"]["text"]
        config = body["rerankingConfiguration"]["bedrockRerankingConfiguration"]
        texts = [s["inlineDocumentSource"]["textDocument"]["text"] for s in body["sources"]]
        scored = sorted(
            ({"index": i, "relevanceScore": round(similarity(query, t), 6)} for i, t in enumerate(texts)),
            key=lambda r: -r["relevanceScore"],
        )
        self.send_json(200, {"results": scored[: config.get("numberOfResults", len(texts))]})

    def _validation(self, message: str) -> None:
        self.send_json(400, {"message": message}, {"x-amzn-ErrorType": "ValidationException"})


class FakeBedrock(FakeServer):
    handler = _Handler

    def bodies(self, route: str) -> list[Any]:
        return [r.body for r in self.requests_to(route)]
