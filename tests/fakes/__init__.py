"""Wire-level fakes of the model services the providers call, served by real HTTP servers on 127.0.0.1.

Each fake records what it received and plays a per-route script of behaviours (``Act``); with an empty
script it answers like the real service would, grounded in the sources it was sent.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.providers.base import Delta, Generation

NOT_COVERED = "The documents do not cover this question."


@dataclass
class Act:
    """What the fake does with the next request on a route."""

    status: int = 200
    error: str | None = None  # an error code (Bedrock) or error type (OpenAI): answer with that error
    message: str = ""
    text: str | None = None  # reply with this text instead of the grounded default
    stop_reason: str | None = None
    delay: float = 0.0  # seconds to wait before answering (read timeouts)
    headers: dict[str, str] = field(default_factory=dict)
    stream_error: str | None = None  # streaming: fail with this error after the first delta


@dataclass
class Recorded:
    route: str
    path: str
    body: Any
    headers: dict[str, str]


class FakeServer:
    """A ThreadingHTTPServer on a free port in a background thread, with a script and a request log."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, stream_interval: float = 0.05) -> None:
        self.requests: list[Recorded] = []
        self.stream_interval = stream_interval  # pause between streamed frames, so streaming is observable
        self._script: dict[str, deque[Act]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def script(self, route: str, *acts: Act) -> None:
        with self._lock:
            self._script[route].extend(acts)

    def next_act(self, route: str) -> Act:
        with self._lock:
            return self._script[route].popleft() if self._script[route] else Act()

    def record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)

    def requests_to(self, route: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.route == route]

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # returns at once when the server stops

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> Any:
        return self.server.fake  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (read timeout): fine
            self.close_connection = True

    def read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_chunked(self, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def send_chunk(self, data: bytes) -> None:
        """One HTTP chunk, flushed at once so the client sees it before the next one."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --- deterministic content ----------------------------------------------------------------------------
_SOURCE = re.compile(r"^\[(\d+)\] [^\n]*\n(.*?)(?=\n\n\[\d+\] |\n\nQuestion:|\Z)", re.S | re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")
_TOKEN = re.compile(r"[^\W\d_]+|\d+", re.U)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


def sources_in(user_text: str) -> dict[int, str]:
    """The numbered sources of a grounded user message: {n: text}."""
    return {int(m.group(1)): m.group(2).strip() for m in _SOURCE.finditer(user_text)}


def grounded_answer(user_text: str) -> str:
    """The first sentence of source [1] followed by " [1]", or the not-covered message."""
    first = sources_in(user_text).get(1)
    if not first:
        return NOT_COVERED
    sentence = next((s.strip() for s in _SENTENCE_END.split(first) if s.strip()), first)
    return f"{sentence} [1]"


def tokens(text: str) -> list[str]:
    """Lower-cased words; CJK runs become character bigrams."""
    out: list[str] = []
    for word in _TOKEN.findall(text.lower()):
        if _CJK.search(word) and len(word) > 1:
            out.extend(word[i : i + 2] for i in range(len(word) - 1))
        else:
            out.append(word)
    return out


def hashed_embedding(text: str, dimension: int, *, normalize: bool) -> list[float]:
    """A hashed bag of words: texts sharing words get similar vectors; same text, same vector."""
    vector = [0.0] * dimension
    for token in tokens(text):
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % dimension
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    if normalize:
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        vector = [v / norm for v in vector]
    else:  # unnormalized like Cohere's output, so the client has to normalize
        vector = [v * 3.0 for v in vector]
    return vector


def similarity(a: str, b: str) -> float:
    """Token overlap in [0, 1], for the fake reranker."""
    ta, tb = set(tokens(a)), set(tokens(b))
    return len(ta & tb) / math.sqrt(len(ta) * len(tb)) if ta and tb else 0.0


def pieces(text: str, count: int = 4) -> list[str]:
    """``text`` cut at word boundaries into about ``count`` pieces (fewer for short texts)."""
    words = re.findall(r"\S+\s*", text) or [text]
    if len(words) < count <= len(text):  # Japanese has no spaces: cut by characters
        words = list(text)
    size = max(1, math.ceil(len(words) / count))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def collect(stream: Iterator[Delta]) -> tuple[list[tuple[float, str]], Generation]:
    """Drain a provider's stream: the (arrival time, text) of each delta, and the final generation."""
    deltas: list[tuple[float, str]] = []
    final = None
    for delta in stream:
        if delta.text:
            deltas.append((time.perf_counter(), delta.text))
        if delta.final is not None:
            final = delta.final
    assert final is not None
    return deltas, final
