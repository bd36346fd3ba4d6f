"""Model provider protocols. Each backend lives in its own module and is built by ``factory``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from app.core.events import Observers


class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dimension) float32, L2-normalized."""

    def embed_query(self, text: str) -> np.ndarray:
        """(dimension,) float32, L2-normalized."""


@runtime_checkable
class CachingEmbedder(Embedder, Protocol):
    """An embedder that can say, without computing anything, whether it already holds a query's vector."""

    def cached_query(self, text: str) -> np.ndarray | None:
        """The query's vector when it is at hand (a cache hit, counted as one), else None."""


class ObservedEmbedder:
    """An embedder that reports how long each call took to ``observers`` (how busy the model is, whichever
    provider it is)."""

    def __init__(self, inner: Embedder, observers: Observers) -> None:
        self.inner = inner
        self.model_id, self.dimension = inner.model_id, inner.dimension
        self._observers = observers

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = self.inner.embed_documents(texts)
        self._observers.model_called("documents", len(texts), time.perf_counter() - started)
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        started = time.perf_counter()
        vector = self.inner.embed_query(text)
        self._observers.model_called("query", 1, time.perf_counter() - started)
        return vector

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Several queries in one model call (``app.providers.batching``); only for models that offer it."""
        started = time.perf_counter()
        vectors: np.ndarray = self.inner.embed_queries(texts)  # type: ignore[attr-defined]
        self._observers.model_called("query", len(texts), time.perf_counter() - started)
        return vectors

    def close(self) -> None:
        closer = getattr(self.inner, "close", None)
        if callable(closer):
            closer()


@dataclass(slots=True)
class Source:
    """A numbered passage given to the chat model; the model cites it as [n]."""

    n: int
    title: str
    text: str
    # The passage's place in its document: title > heading > sub-heading (app.text.context.context_line).
    context: str = ""
    # Retrieval's view of the passage, for an answerer that weighs it (the extractive one): its document and its
    # score in chat's ranking (0..1, higher is better). Prompts do not show them.
    document_id: str = ""
    score: float | None = None


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
