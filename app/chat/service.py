"""search → prompt → generate → map citations back to chunks; conversations persist."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.access.caller import SYSTEM, Caller
from app.chat.citations import cited_numbers, strip_unknown
from app.core.errors import NotFound
from app.providers.base import ChatModel, Generation, GenerationRequest, Source, Turn, Usage
from app.providers.local import not_covered_message
from app.providers.prompt import pick_model
from app.search.second_stage import SentenceRescorer
from app.search.service import ScoredChunk, SearchService, distinct_documents_first
from app.stores.sql.models import Conversation
from app.stores.sql.repositories import ConversationRepository
from app.stores.vector.base import ChunkFilter
from app.text.context import context_line

HISTORY_TURNS = 6


@dataclass(slots=True)
class Citation:
    n: int
    document_id: str
    chunk_id: str
    title: str
    quote: str
    source: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "document_id": self.document_id,
            "chunk_id": self.chunk_id,
            "title": self.title,
            "quote": self.quote,
            "source": self.source,
        }


@dataclass(slots=True)
class ChatAnswer:
    answer: str
    citations: list[Citation]
    conversation_id: str
    model: str
    usage: Usage
    grounded: bool
    intervened: bool = False
    took_ms: float = 0.0


@dataclass(slots=True)
class ChatEvent:
    """Streaming: ``citations`` (the numbered sources) first, then ``delta``s, then ``done``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Prepared:
    conversation_id: str
    request: GenerationRequest
    sources: list[Citation]


class ChatService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        search: SearchService,
        model: ChatModel,
        *,
        top_k: int = 5,
        candidates: int = 12,
        second_stage: SentenceRescorer | None = None,
        min_similarity: float = 0.8,
        allowed_models: list[str] | None = None,
    ) -> None:
        self._allowed_models = list(allowed_models or [])
        self._sessions = sessions
        self._search = search
        self._model = model
        self._top_k = top_k
        self._candidates = candidates
        self._second_stage = second_stage
        self._min_similarity = min_similarity

    def ask(
        self,
        message: str,
        flt: ChunkFilter,
        *,
        conversation_id: str | None = None,
        top_k: int | None = None,
        caller: Caller | None = None,
        model: str | None = None,
    ) -> ChatAnswer:
        started = time.perf_counter()
        prepared = self._prepare(message, flt, conversation_id, top_k, caller or SYSTEM, model)
        if not prepared.sources:
            generation = Generation(text=not_covered_message(message), model=self._model.model_id)
        else:
            generation = self._model.generate(prepared.request)
        answer = self._finish(prepared, message, generation)
        answer.took_ms = round((time.perf_counter() - started) * 1000, 2)
        return answer

    def stream(
        self,
        message: str,
        flt: ChunkFilter,
        *,
        conversation_id: str | None = None,
        top_k: int | None = None,
        caller: Caller | None = None,
        model: str | None = None,
    ) -> Iterator[ChatEvent]:
        prepared = self._prepare(message, flt, conversation_id, top_k, caller or SYSTEM, model)
        yield ChatEvent(
            "citations",
            {
                "conversation_id": prepared.conversation_id,
                "citations": [c.as_dict() for c in prepared.sources],
            },
        )
        generation: Generation | None = None
        if not prepared.sources:
            text = not_covered_message(message)
            yield ChatEvent("delta", {"text": text})
            generation = Generation(text=text, model=self._model.model_id)
        else:
            for delta in self._model.stream(prepared.request):
                if delta.text:
                    yield ChatEvent("delta", {"text": delta.text})
                if delta.final is not None:
                    generation = delta.final
            if generation is None:  # a provider that forgot its final event: still finish cleanly
                generation = Generation(text="", model=self._model.model_id)
        answer = self._finish(prepared, message, generation)
        yield ChatEvent(
            "done",
            {
                "conversation_id": answer.conversation_id,
                "answer": answer.answer,
                "citations": [c.as_dict() for c in answer.citations],
                "model": answer.model,
                "usage": answer.usage.as_dict(),
                "grounded": answer.grounded,
                "guardrail_intervened": answer.intervened,
            },
        )

    # --- steps -----------------------------------------------------------------------------------
    def _prepare(
        self,
        message: str,
        flt: ChunkFilter,
        conversation_id: str | None,
        top_k: int | None,
        caller: Caller,
        model: str | None = None,
    ) -> _Prepared:
        # Refuse a model the operator did not allow before any retrieval work is done.
        chosen = pick_model(model, self._model.model_id, self._allowed_models) if model else None
        with self._sessions.begin() as session:
            conversations = ConversationRepository(session)
            if conversation_id is not None:
                conv = conversations.get(conversation_id)
                if conv is None or not _may_use(conv, caller):
                    raise NotFound(f"conversation {conversation_id} does not exist")
                history = [
                    Turn(role=m.role, content=m.content)  # type: ignore[arg-type]
                    for m in conversations.messages(conv.id, HISTORY_TURNS)
                ]
            else:
                conv = conversations.add(
                    Conversation(collection=flt.collection, key_id=caller.key_id, owner=caller.principals)
                )
                history = []
            conv_id = conv.id
        previous = [t.content for t in history if t.role == "user"]
        query = f"{previous[-1]}\n{message}" if previous else message
        k = top_k or self._top_k
        # What chat reads: a pool of candidates re-scored by their best sentence, then each document's best
        # passage before any document's second, so one long document cannot crowd out the one that answers.
        outcome = self._search.search(
            query, flt, top_k=max(k, self._candidates), mode="hybrid", second_stage=self._second_stage or False
        )
        relevant = [h for h in distinct_documents_first(outcome.hits) if self._covers(h)][:k]
        sources = [
            Citation(
                n=i,
                document_id=h.chunk.document_id,
                chunk_id=h.chunk.chunk_id,
                title=h.chunk.title,
                quote=h.chunk.text,
                source=h.chunk.source.as_dict(),
            )
            for i, h in enumerate(relevant, start=1)
        ]
        request = GenerationRequest(
            question=message,
            sources=[
                Source(
                    n=c.n,
                    title=c.title,
                    text=c.quote,
                    context=context_line(c.title, h.chunk.source.heading_path),
                    document_id=c.document_id,
                    score=h.score,
                )
                for c, h in zip(sources, relevant, strict=True)
            ],
            history=history,
            model=chosen,
        )
        return _Prepared(conv_id, request, sources)

    def _covers(self, hit: ScoredChunk) -> bool:
        return hit.vector_score is not None and hit.vector_score >= self._min_similarity

    def _finish(self, prepared: _Prepared, message: str, generation: Generation) -> ChatAnswer:
        by_n = {c.n: c for c in prepared.sources}
        text = strip_unknown(generation.text, set(by_n))
        citations = [by_n[n] for n in cited_numbers(text) if n in by_n]
        with self._sessions.begin() as session:
            conversations = ConversationRepository(session)
            conversations.append(prepared.conversation_id, "user", message)
            conversations.append(prepared.conversation_id, "assistant", text, [c.as_dict() for c in citations])
        return ChatAnswer(
            answer=text,
            citations=citations,
            conversation_id=prepared.conversation_id,
            model=generation.model,
            usage=generation.usage,
            grounded=bool(citations) and not generation.intervened,
            intervened=generation.intervened,
        )


def _may_use(conversation: Conversation, caller: Caller) -> bool:
    """A conversation belongs to the key that started it, acting for the same principals (its own, or the end
    user's it impersonated): sharing a principal is not enough, since its history may quote passages only the
    starter could read."""
    return conversation.key_id == caller.key_id and sorted(conversation.owner or []) == sorted(caller.principals or [])
