"""Chat through an on-prem OpenAI-compatible model server, with nothing but settings changed: a real
`knowledge-search serve` process (local e5 embeddings) whose chat model is a wire-level fake of vLLM / Ollama
on 127.0.0.1 (tests/fakes/openai_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import sse_events
from tests.integration.test_process import Server

pytestmark = pytest.mark.process

MODEL = "llama3.1:8b"
LEAVE = "Employees receive 20 days of paid leave each year. Unused leave days expire at the end of March."
TRAVEL = "Travel expenses are reimbursed within 30 days of submission. Submit receipts through the finance portal."
REMOTE = "# 在宅勤務規程\n\n在宅勤務は週3日まで認められます。申請には上長の承認が必要です。\n"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(stream_interval=0.05) as server:
        yield server


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    return sse_events(response.read().decode())


def test_chat_through_an_openai_compatible_server(settings: Settings, fake: FakeOpenAI) -> None:
    server = Server(settings, KS_CHAT_PROVIDER="openai", KS_OPENAI_BASE_URL=fake.base_url, KS_CHAT_MODEL=MODEL)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            docs = {
                "leave": http.post("/v1/documents", json={"title": "Paid leave policy", "text": LEAVE}),
                "travel": http.post("/v1/documents", json={"title": "Travel expenses", "text": TRAVEL}),
                "remote": http.post("/v1/documents", files={"file": ("remote-work.md", REMOTE.encode())}),
            }
            assert all(r.status_code == 201 for r in docs.values()), {k: r.text for k, r in docs.items()}
            chunk = {
                name: http.get(f"/v1/documents/{r.json()['id']}/chunks").json()["items"][0] for name, r in docs.items()
            }

            # whole answer: the model's [1] maps to the leave chunk
            r = http.post("/v1/chat", json={"message": "How many days of paid leave do employees receive each year?"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["answer"] == "Employees receive 20 days of paid leave each year. [1]"
            assert [(c["n"], c["chunk_id"]) for c in body["citations"]] == [(1, chunk["leave"]["chunk_id"])]
            assert body["model"] == MODEL and body["grounded"] is True
            assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
            (sent,) = [r.body for r in fake.requests_to("chat")]
            assert sent["model"] == MODEL and sent["stream"] is False
            assert sent["messages"][0]["role"] == "system"
            assert "ONLY the numbered sources" in sent["messages"][0]["content"]
            assert "[1] Paid leave policy\n" + LEAVE in sent["messages"][-1]["content"]

            # streamed, in Japanese: citations, several deltas, done
            question = "在宅勤務は週何日まで認められますか？"
            with http.stream("POST", "/v1/chat", json={"message": question, "stream": True}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                events = sse(r)
            kinds = [kind for kind, _ in events]
            assert kinds[0] == "citations" and kinds[-1] == "done", kinds
            assert set(kinds[1:-1]) == {"delta"} and len(kinds) - 2 >= 3, kinds
            assert events[0][1]["citations"][0]["chunk_id"] == chunk["remote"]["chunk_id"]
            done = events[-1][1]
            streamed = "".join(data["text"] for kind, data in events if kind == "delta")
            assert streamed == done["answer"] and done["answer"].endswith("在宅勤務は週3日まで認められます。 [1]")
            assert [c["chunk_id"] for c in done["citations"]] == [chunk["remote"]["chunk_id"]]
            assert done["model"] == MODEL and done["usage"]["output_tokens"] > 0
            streamed_request = fake.requests_to("chat")[-1].body
            assert streamed_request["stream"] is True and streamed_request["stream_options"] == {"include_usage": True}
    finally:
        server.stop()


POLICY = """# {name} travel policy

## Hotels

Book a standard room within the nightly limit of {limit} dollars. Keep every receipt.

## Meals

Meals are paid from the daily allowance of {meals} dollars.
"""


def test_the_model_reads_each_documents_best_passage_first_with_its_title_and_section(
    settings: Settings, fake: FakeOpenAI
) -> None:
    server = Server(settings, KS_CHAT_PROVIDER="openai", KS_OPENAI_BASE_URL=fake.base_url, KS_CHAT_MODEL=MODEL)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for name, limit, meals in (("Wombat", 140, 40), ("Quokka", 180, 50)):
                body = POLICY.format(name=name, limit=limit, meals=meals).encode()
                r = http.post("/v1/documents", files={"file": (f"{name.lower()}.md", body)})
                assert r.status_code == 201, r.text
            r = http.post("/v1/chat", json={"message": "What is the nightly hotel limit in the Wombat travel policy?"})
            assert r.status_code == 200, r.text
            answer = r.json()
            (sent,) = [q.body for q in fake.requests_to("chat")]
            system, user = sent["messages"][0]["content"], sent["messages"][-1]["content"]
            # the prompt makes the model cite, and cite the document the question names
            assert "End every sentence of your answer with the source(s)" in system
            assert "cite, the source whose document and section are the ones the question asks about" in system
            headers = [line for line in user.splitlines() if line.startswith("[")]
            # best passage first, under its title and section; the other document's best passage before any
            # second passage of the first document
            assert headers[0] == "[1] Wombat travel policy > Hotels"
            assert headers[1].startswith("[2] Quokka travel policy >")
            assert "nightly limit of 140 dollars" in user.split("[2]")[0]
            assert answer["citations"][0]["title"] == "Wombat travel policy" and answer["grounded"]
    finally:
        server.stop()
