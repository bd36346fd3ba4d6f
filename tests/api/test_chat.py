"""Grounded chat: citations, "not covered", conversations, streaming (both backends)."""

from __future__ import annotations

import re

import pytest

from tests.helpers import PROBLEM, SAMPLE_FILES, sse_events, upload_file, upload_text


@pytest.fixture
def corpus(client):
    return {name: upload_file(client, name, collection="samples") for name in SAMPLE_FILES}


def _cited_numbers(answer: str) -> set[int]:
    return {int(n) for group in re.findall(r"\[([\d, ]+)\]", answer) for n in group.split(",")}


def test_answer_is_grounded_with_citations_to_the_right_chunk(client, corpus):
    r = client.post("/v1/chat", json={"message": "How many days of paid annual leave do employees get?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grounded"] is True
    assert "10 days of paid annual leave" in body["answer"]
    assert body["citations"], body
    cited = body["citations"][0]
    assert cited["document_id"] == corpus["leave-policy.md"]["id"]
    assert "10 days of paid annual leave" in cited["quote"]
    # every [n] in the answer has its citation, and every citation is used
    assert _cited_numbers(body["answer"]) == {c["n"] for c in body["citations"]}
    # the cited chunk exists and is where the quote came from
    chunks = client.get(f"/v1/documents/{cited['document_id']}/chunks").json()["items"]
    assert any(c["chunk_id"] == cited["chunk_id"] and c["text"] == cited["quote"] for c in chunks)
    assert body["model"] == "extractive"
    assert body["usage"]["input_tokens"] > 0


def test_japanese_question_gets_a_japanese_answer_from_the_japanese_document(client, corpus):
    body = client.post("/v1/chat", json={"message": "有給休暇は入社後何日もらえますか？"}).json()
    assert body["grounded"]
    assert "10日付与" in body["answer"]
    assert body["citations"][0]["document_id"] == corpus["ja-leave-policy.md"]["id"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is the boiling point of mercury?", "do not cover"),
        ("富士山の標高は何メートルですか？", "見つかりませんでした"),
    ],
)
def test_says_not_covered_instead_of_inventing(client, corpus, question, expected):
    body = client.post("/v1/chat", json={"message": question}).json()
    assert expected in body["answer"]
    assert body["citations"] == []
    assert body["grounded"] is False


def test_not_covered_when_collection_is_empty(client):
    body = client.post("/v1/chat", json={"message": "How many days of paid leave?"}).json()
    assert body["citations"] == [] and "do not cover" in body["answer"]


def test_conversation_persists_and_follow_up_uses_it(client, corpus):
    first = client.post("/v1/chat", json={"message": "What is the remote work allowance?"}).json()
    assert "3,000 yen" in first["answer"]
    conv = first["conversation_id"]
    follow = client.post("/v1/chat", json={"message": "And how many days a week?", "conversation_id": conv}).json()
    assert follow["conversation_id"] == conv
    assert "three days a week" in follow["answer"]
    assert follow["citations"][0]["document_id"] == corpus["remote-work.html"]["id"]


def test_unknown_conversation_is_404(client):
    r = client.post("/v1/chat", json={"message": "hi", "conversation_id": "doesnotexist"})
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)


def test_collection_scope_limits_citations(client, corpus):
    body = client.post("/v1/chat", json={"message": "How many days of paid leave?", "collection": "other"}).json()
    assert body["citations"] == []


def test_streaming_sends_citations_then_deltas_then_done(client, corpus):
    with client.stream("POST", "/v1/chat", json={"message": "How long must passwords be?", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events("".join(r.iter_text()))
    kinds = [k for k, _ in events]
    assert kinds[0] == "citations" and kinds[-1] == "done" and "delta" in kinds
    assert set(kinds[1:-1]) == {"delta"}
    done = events[-1][1]
    streamed = "".join(d["text"] for k, d in events if k == "delta")
    assert streamed == done["answer"]
    assert "14 characters" in done["answer"]
    sent = {c["chunk_id"] for c in events[0][1]["citations"]}
    assert done["citations"] and {c["chunk_id"] for c in done["citations"]} <= sent
    assert done["usage"]["output_tokens"] > 0 and done["conversation_id"]


def test_bad_chat_requests(client):
    for body in ({"message": ""}, {"message": "x" * 4001}, {"message": "ok", "top_k": 0}, {"nope": 1}):
        r = client.post("/v1/chat", json=body)
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)


DONATIONS_JA = """# Debian への貢献

## Debian プロジェクトにお金を寄付するには

寄付は Software in the Public Interest (SPI) が受け付けています。
小切手や銀行振込で SPI 宛てに送金できます。SPI は米国の非営利団体です。

## 翻訳を手伝うには

翻訳チームのメーリングリストに参加してください。
"""

REDISTRIBUTION_JA = """# Debian の再配布

## Debian の CD を販売できますか

はい。CD を作って販売しても構いません。
CD 製作者からの購入は Debian プロジェクトへの寄付となり、寄付することは良い宣伝となります。
"""


def test_paraphrased_japanese_question_cites_the_document_retrieval_ranks_first(client):
    # The donation FAQ answers under a heading that holds the question's words; the CD page shares more of them
    # in one sentence ("Debian プロジェクトへの寄付") but is not about where to send money.
    donations = upload_text(client, DONATIONS_JA, title="Debian FAQ 寄付")
    upload_text(client, REDISTRIBUTION_JA, title="Debian FAQ 再配布")
    body = client.post(
        "/v1/chat", json={"message": "Debian プロジェクトにお金を寄付するにはどこに送ればいいですか？"}
    ).json()
    assert body["grounded"], body
    assert [c["document_id"] for c in body["citations"]] == [donations["id"]]
    assert "SPI" in body["answer"]
