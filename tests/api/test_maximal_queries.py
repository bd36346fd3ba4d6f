"""The longest search and chat a request may carry (2,000 and 4,000 characters) still work, on both backends: the
vector half reads 512 tokens of them, the keyword half 64 terms (their beginning and end, each time), and the
chat answers and records the whole question."""

from __future__ import annotations

import pytest

from app.providers.e5 import MAX_TOKENS, E5Embedder
from app.stores.sql.repositories import ConversationRepository
from app.text.analysis import MAX_QUERY_TERMS
from tests.helpers import upload_text

MEMO = "The shuttle bus to the research campus leaves the east gate at 08:10 every weekday."
# 2,000 characters, nearly all distinct words: past OpenSearch's 1,024 clauses if every term were sent
FILLER = " ".join(f"w{i:04d}" for i in range(1_000))


def _maximal(head: str, length: int) -> str:
    return (head + " " + FILLER)[:length]


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_a_maximal_search_still_finds_the_document(client, mode: str):
    doc = upload_text(client, MEMO, collection="maximal")
    query = _maximal("When does the shuttle bus leave the east gate?", 2_000)
    r = client.post("/v1/search", json={"query": query, "mode": mode, "collection": "maximal", "top_k": 3})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["document_id"] == doc["id"]


def test_a_maximal_emoji_search_answers(client):
    upload_text(client, MEMO, collection="maximal")
    r = client.post("/v1/search", json={"query": "😀" * 2_000, "collection": "maximal"})
    assert r.status_code == 200, r.text


@pytest.fixture
def recording_container(settings):  # type: ignore[no-untyped-def]
    """A container whose (real) model notes every query it embeds."""
    from app.container import build_container

    embedder = E5Embedder()
    model, seen = embedder._model, []

    class Recording:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(model, name)

        def query(self, text):  # type: ignore[no-untyped-def]
            seen.extend([text] if isinstance(text, str) else text)  # one query, or a batch of them
            return model.query(text)

    embedder._model = Recording()  # type: ignore[assignment]
    container = build_container(settings, embedder=embedder)
    container.seen_queries = seen  # type: ignore[attr-defined]
    container.token_count = model.token_count  # type: ignore[attr-defined]
    yield container
    container.close()


def test_a_maximal_chat_is_answered_and_recorded_whole_while_the_model_reads_512_tokens(recording_container):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(container=recording_container), base_url="http://localhost") as client:
        upload_text(client, MEMO, collection="maximal")
        # 4,000 characters: a paragraph said many times over, the question itself only at the very end
        question = ("I take the shuttle bus to the research campus most mornings. " * 70)[:3_950]
        question += " When does it leave the east gate?"
        assert len(question) <= 4_000
        r = client.post("/v1/chat", json={"message": question, "collection": "maximal"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "08:10" in body["answer"] and body["citations"]
        seen = recording_container.seen_queries
        assert seen and all(recording_container.token_count(q, True) <= MAX_TOKENS for q in seen)
        assert all(len(q) < len(question) for q in seen)
        with recording_container.sessions() as session:
            messages = ConversationRepository(session).messages(body["conversation_id"])
        assert messages[0].role == "user" and messages[0].content == question


def test_the_keyword_half_sends_at_most_the_first_and_last_terms(container):
    terms = container.analyzer.query_terms(_maximal("shuttle bus", 3_990) + " east gate")
    assert len(terms) == MAX_QUERY_TERMS and terms[:2] == ["shuttl", "bus"] and terms[-2:] == ["east", "gate"]
