"""Model provider protocols. Each backend lives in its own module and is built by ``factory``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np


class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dimension) float32, L2-normalized."""

    def embed_query(self, text: str) -> np.ndarray:
        """(dimension,) float32, L2-normalized."""


EmbedListener = Callable[[str, int, float], None]  # (kind: "documents" or "query", texts, seconds)


class ObservedEmbedder:
    """An embedder that tells ``listener`` how long each call took (the metrics hooks set it): how busy the
    model is, whichever provider it is."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id, self.dimension = inner.model_id, inner.dimension
        self.listener: EmbedListener | None = None

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = self.inner.embed_documents(texts)
        self._report("documents", len(texts), started)
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        started = time.perf_counter()
        vector = self.inner.embed_query(text)
        self._report("query", 1, started)
        return vector

    def _report(self, kind: str, texts: int, started: float) -> None:
        if self.listener is not None:
            self.listener(kind, texts, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:  # close() and whatever else a provider offers
        return getattr(self.inner, name)


@dataclass(slots=True)
class Source:
    """A numbered passage given to the chat model; the model cites it as [n]."""

    n: int
    title: str
    text: str
    # The passage's place in its document: title > heading > sub-heading (app.search.context.context_line).
    context: str = ""


@dataclass(slots=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(slots=True)
class GenerationRequest:
    question: str
    sources: list[Source]
    history: list[Turn] = field(default_factory=list)
    model: str | None = None


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass(slots=True)
class Generation:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    # Set when a guardrail or the model itself refused; text then holds the message to show.
    intervened: bool = False


@dataclass(slots=True)
class Delta:
    """One piece of a streamed answer. The last one carries ``final``."""

    text: str = ""
    final: Generation | None = None


class ChatModel(Protocol):
    model_id: str

    def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> Iterator[Delta]: ...


class Reranker(Protocol):
    def rerank(self, query: str, texts: Sequence[str], top_n: int) -> list[tuple[int, float]]:
        """Indices into ``texts`` with relevance scores, best first."""
