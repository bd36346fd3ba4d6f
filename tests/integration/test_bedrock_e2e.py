"""The core scenario through Amazon Bedrock, with nothing but settings changed: a real `knowledge-search serve`
process whose boto3 clients talk to a wire-level fake of Bedrock on 127.0.0.1 (tests/fakes/bedrock_server.py).

Titan v2 embeds (256 dimensions), the Rerank API (amazon.rerank-v1:0) reorders, Claude answers through Converse /
ConverseStream. The fake embeds as a hashed bag of words, so the texts below were chosen to share words with
their questions; its cosines run lower than e5's, hence KS_CHAT_MIN_SIMILARITY=0.3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from tests.fakes.bedrock_server import FakeBedrock, access_denied, error, guardrail, reply, throttle
from tests.helpers import sse_events
from tests.integration.test_process import Server

pytestmark = pytest.mark.process

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROFILE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"  # a cross-region inference profile
TITAN = "amazon.titan-embed-text-v2:0"
PROBLEM = "application/problem+json"

LEAVE = "Employees receive 20 days of paid leave each year. Unused leave days expire at the end of March."
TRAVEL = "Travel expenses are reimbursed within 30 days of submission. Submit receipts through the finance portal."
REMOTE = "# 在宅勤務規程\n\n在宅勤務は週3日まで認められます。申請には上長の承認が必要です。\n"

LEAVE_Q = "How many days of paid leave do employees receive each year?"
REMOTE_Q = "在宅勤務は週何日まで認められますか？"
BOTH_Q = "How many days of paid leave, and how are travel expenses reimbursed?"  # close to LEAVE and TRAVEL
OFF_TOPIC_Q = "What is the boiling point of mercury?"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeBedrock]:
    """The fake, and an environment in which boto3 finds only the test credentials and region."""
    with FakeBedrock(stream_interval=0.05) as server:
        # Server() copies os.environ: nothing from the developer's AWS set-up may leak into the process.
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_BEARER_TOKEN_BEDROCK"):
            monkeypatch.delenv(name, raising=False)
        yield server


def bedrock_env(fake: FakeBedrock, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Settings only: the Bedrock providers, the fake's endpoints through boto3's own variables."""
    return {
        "KS_EMBEDDING_PROVIDER": "bedrock",
        "KS_EMBEDDING_MODEL": TITAN,
        "KS_EMBEDDING_DIMENSIONS": "256",
        "KS_CHAT_PROVIDER": "bedrock",
        "KS_CHAT_MODEL": CLAUDE,
        "KS_RERANK_PROVIDER": "bedrock",
        "KS_CHAT_MIN_SIMILARITY": "0.3",
        # Two attempts keep the throttling case quick; standard mode retries without a client-side rate limiter.
        "KS_BEDROCK_MAX_ATTEMPTS": "2",
        "KS_BEDROCK_RETRY_MODE": "standard",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake.url,
        "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME": fake.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


@pytest.fixture
def serve(settings: Settings, fake: FakeBedrock, tmp_path: Path) -> Iterator[Any]:
    """Start `knowledge-search serve` with the Bedrock settings (plus ``extra``); stopped at the end."""
    servers: list[Server] = []

    def start(**extra: str) -> httpx.Client:
        server = Server(settings, **bedrock_env(fake, tmp_path, **extra))
        servers.append(server)
        return httpx.Client(base_url=server.url, timeout=60)

    start.servers = servers  # type: ignore[attr-defined]

    yield start
    for server in servers:
        server.stop()


def upload(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """Two English documents as JSON text, one Japanese Markdown file; each with its chunks."""
    docs = {
        "leave": http.post("/v1/documents", json={"title": "Paid leave policy", "text": LEAVE}),
        "travel": http.post("/v1/documents", json={"title": "Travel expenses", "text": TRAVEL}),
        "remote": http.post("/v1/documents", files={"file": ("remote-work.md", REMOTE.encode())}),
    }
    out = {}
    for name, r in docs.items():
        assert r.status_code == 201, r.text
        doc = r.json()
        assert doc["status"] == "indexed", doc
        doc["chunks"] = http.get(f"/v1/documents/{doc['id']}/chunks").json()["items"]
        assert len(doc["chunks"]) == 1, doc["chunks"]
        out[name] = doc
    return out


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    return sse_events(response.read().decode())


def sent_sources(body: dict[str, Any]) -> dict[int, str]:
    """{n: title} of the sources in a recorded Converse request."""
    user = body["messages"][-1]["content"][0]["text"]
    return {int(n): title for n, title in re.findall(r"^\[(\d+)\] (.*)$", user, re.M)}


def test_ingest_search_and_chat_through_bedrock(serve: Any, fake: FakeBedrock) -> None:
    with serve() as http:
        assert http.get("/readyz").status_code == 200
        docs = upload(http)
        chunk = {name: doc["chunks"][0] for name, doc in docs.items()}

        # every chunk was embedded by Titan v2 at 256 dimensions, one InvokeModel request per text
        embedded = fake.requests_to("invoke")
        assert all(r.path == f"/model/{TITAN}/invoke" for r in embedded)
        assert all(r.body["dimensions"] == 256 and r.body["normalize"] is True for r in embedded)
        # each chunk's text reaches the embedder under its context line (title > headings), never alone or cut
        sent = [r.body["inputText"] for r in embedded]
        for name, doc in docs.items():
            text = chunk[name]["text"]
            assert any(s.endswith("\n\n" + text) and s.startswith(doc["title"]) for s in sent), (name, sent)
        assert embedded[0].headers["authorization"].startswith("AWS4-HMAC-SHA256")

        # hybrid search, English and Japanese; the query is embedded and the candidates reranked
        for query, name in (
            ("paid leave days", "leave"),
            ("在宅勤務は週何日", "remote"),
            ("travel receipts", "travel"),
        ):
            r = http.post("/v1/search", json={"query": query, "mode": "hybrid", "top_k": 3})
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["chunk_id"] == chunk[name]["chunk_id"], (query, r.json())
            assert query in {b["inputText"] for b in fake.bodies("invoke")}
        assert len(fake.requests_to("rerank")) == 3

        # chat: Claude's answer cites [1], which maps to the leave chunk
        r = http.post("/v1/chat", json={"message": LEAVE_Q})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"] == "Employees receive 20 days of paid leave each year. [1]"
        assert [(c["n"], c["chunk_id"], c["document_id"]) for c in body["citations"]] == [
            (1, chunk["leave"]["chunk_id"], docs["leave"]["id"])
        ]
        assert body["citations"][0]["quote"] == LEAVE
        assert body["grounded"] is True and body["guardrail_intervened"] is False
        assert body["model"] == CLAUDE
        assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
        (converse,) = fake.requests_to("converse")
        assert converse.path == f"/model/{CLAUDE}/converse"
        system = converse.body["system"][0]["text"]
        assert "ONLY the numbered sources" in system and "do not cover" in system
        assert sent_sources(converse.body) == {1: "Paid leave policy"}
        assert converse.body["messages"][-1]["content"][0]["text"].endswith(f"Question: {LEAVE_Q}")
        assert "guardrailConfig" not in converse.body
        assert LEAVE_Q in {b["inputText"] for b in fake.bodies("invoke")}  # the question was embedded too

        # streaming, in Japanese: citations, then several deltas, then done
        with http.stream("POST", "/v1/chat", json={"message": REMOTE_Q, "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse(r)
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "citations" and kinds[-1] == "done", kinds
        assert set(kinds[1:-1]) == {"delta"} and len(kinds) - 2 >= 3, kinds
        assert [c["chunk_id"] for c in events[0][1]["citations"]] == [chunk["remote"]["chunk_id"]]
        done = events[-1][1]
        streamed = "".join(data["text"] for kind, data in events if kind == "delta")
        assert streamed == done["answer"] and done["answer"].endswith("在宅勤務は週3日まで認められます。 [1]")
        assert [c["chunk_id"] for c in done["citations"]] == [chunk["remote"]["chunk_id"]]
        assert done["model"] == CLAUDE and done["usage"]["output_tokens"] > 0 and done["grounded"] is True
        (streamed_request,) = fake.requests_to("converse-stream")
        assert streamed_request.path == f"/model/{CLAUDE}/converse-stream"
        assert "ONLY the numbered sources" in streamed_request.body["system"][0]["text"]

        # a citation of a source that was never sent is dropped from the answer and the citations
        fake.script("converse", reply("Leave is 20 days a year [1]. Expenses are repaid within 30 days [2]. See [7]."))
        body = http.post("/v1/chat", json={"message": BOTH_Q}).json()
        sources = sent_sources(fake.bodies("converse")[-1])
        assert sorted(sources.values()) == ["Paid leave policy", "Travel expenses"]  # two sources were sent
        assert body["answer"] == "Leave is 20 days a year [1]. Expenses are repaid within 30 days [2]. See."
        by_title = {"Paid leave policy": "leave", "Travel expenses": "travel"}
        assert [(c["n"], c["chunk_id"]) for c in body["citations"]] == [
            (n, chunk[by_title[sources[n]]]["chunk_id"]) for n in (1, 2)
        ]

        # a question the documents do not cover never reaches the model
        calls = len(fake.requests_to("converse"))
        body = http.post("/v1/chat", json={"message": OFF_TOPIC_Q}).json()
        assert "do not cover" in body["answer"] and body["citations"] == [] and body["grounded"] is False
        assert len(fake.requests_to("converse")) == calls

    # one INFO line per model call with the model and its token counts, never the document text
    log = serve.servers[0].log.read_text()
    assert f"bedrock converse model={CLAUDE}" in log and "output_tokens=" in log
    assert f"bedrock embed model={TITAN}" in log
    assert "Unused leave days" not in log


def test_bedrock_failures_become_problems(serve: Any, fake: FakeBedrock) -> None:
    with serve(KS_CHAT_ALLOWED_MODELS=json.dumps([PROFILE])) as http:
        upload(http)

        # a request may pick an allowed model, here a cross-region inference profile; no other
        r = http.post("/v1/chat", json={"message": LEAVE_Q, "model": PROFILE})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == PROFILE and body["citations"]
        assert fake.requests_to("converse")[-1].path == f"/model/{PROFILE}/converse"
        r = http.post("/v1/chat", json={"message": LEAVE_Q, "model": "meta.llama3-70b-instruct-v1:0"})
        assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM)
        assert PROFILE in r.json()["detail"]
        fake.requests.clear()

        # still throttled after the retry budget (2 attempts): 429 with Bedrock's own retry hint
        fake.script(
            "converse", *[error("ThrottlingException", "Too many requests", headers={"x-amz-retry-after": "2500"})] * 2
        )
        r = http.post("/v1/chat", json={"message": LEAVE_Q})
        assert r.status_code == 429, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        assert r.headers["retry-after"] == "3"
        assert "throttling" in r.json()["detail"] and "Service Quotas" in r.json()["detail"]
        assert len(fake.requests_to("converse")) == 2

        # without a hint, the default Retry-After
        fake.script("converse", *throttle(2))
        r = http.post("/v1/chat", json={"message": LEAVE_Q})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1

        # access denied: 503, and the detail names the IAM action and the model's ARN; not retried
        calls = len(fake.requests_to("converse"))
        fake.script("converse", access_denied())
        r = http.post("/v1/chat", json={"message": LEAVE_Q})
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        detail = r.json()["detail"]
        assert "bedrock:InvokeModel" in detail and f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}" in detail
        assert "Model access" in detail
        assert len(fake.requests_to("converse")) == calls + 1

        # denied on an inference profile: the detail names the profile's ARN and its models' ARNs
        fake.script("converse", access_denied())
        r = http.post("/v1/chat", json={"message": LEAVE_Q, "model": PROFILE})
        assert r.status_code == 503
        detail = r.json()["detail"]
        assert f"arn:aws:bedrock:us-east-1:<account-id>:inference-profile/{PROFILE}" in detail
        assert f"arn:aws:bedrock:*::foundation-model/{PROFILE.removeprefix('us.')}" in detail

        # throttled once the stream has begun (the citations event is out): an `error` event with the problem
        fake.script("converse-stream", *throttle(2))
        with http.stream("POST", "/v1/chat", json={"message": LEAVE_Q, "stream": True}) as r:
            assert r.status_code == 200
            events = sse(r)
        assert [kind for kind, _ in events] == ["citations", "error"]
        assert events[-1][1]["status"] == 429 and "throttling" in events[-1][1]["detail"]

        # the embedding model denied: the same problem, naming the embedding model
        fake.script("invoke", access_denied())
        r = http.post("/v1/search", json={"query": "paid leave", "mode": "semantic"})
        assert r.status_code == 503 and r.headers["content-type"].startswith(PROBLEM)
        assert "bedrock:InvokeModel" in r.json()["detail"] and TITAN in r.json()["detail"]

        # the service recovered: the next question is answered
        assert http.post("/v1/chat", json={"message": LEAVE_Q}).json()["citations"]


def test_guardrail_intervention_is_an_answer_without_citations(serve: Any, fake: FakeBedrock) -> None:
    with serve(KS_BEDROCK_GUARDRAIL_ID="gr-e2e", KS_BEDROCK_GUARDRAIL_VERSION="3") as http:
        upload(http)
        expected = {"guardrailIdentifier": "gr-e2e", "guardrailVersion": "3", "trace": "disabled"}

        fake.script("converse", guardrail("Sorry, this topic is blocked."))
        r = http.post("/v1/chat", json={"message": LEAVE_Q})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["guardrail_intervened"] is True and body["grounded"] is False
        assert body["answer"] == "Sorry, this topic is blocked." and body["citations"] == []
        assert fake.bodies("converse")[-1]["guardrailConfig"] == expected

        fake.script("converse-stream", guardrail("Sorry, this topic is blocked."))
        with http.stream("POST", "/v1/chat", json={"message": LEAVE_Q, "stream": True}) as r:
            events = sse(r)
        done = events[-1][1]
        assert events[-1][0] == "done" and done["guardrail_intervened"] is True and done["citations"] == []
        assert fake.bodies("converse-stream")[-1]["guardrailConfig"] == expected

        # without an intervention the same settings answer normally, still through the guardrail
        body = http.post("/v1/chat", json={"message": LEAVE_Q}).json()
        assert body["guardrail_intervened"] is False and body["citations"]
        assert fake.bodies("converse")[-1]["guardrailConfig"] == expected

        # access denied under a guardrail also names bedrock:ApplyGuardrail
        fake.script("converse", access_denied())
        r = http.post("/v1/chat", json={"message": LEAVE_Q})
        assert r.status_code == 503 and "bedrock:ApplyGuardrail" in r.json()["detail"]
