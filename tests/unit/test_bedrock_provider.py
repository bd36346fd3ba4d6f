"""Bedrock providers through the real boto3 client, pointed at a wire-level fake of Bedrock on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.config import Settings
from app.core.errors import (
    BadInput,
    ConfigurationError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from app.providers.base import GenerationRequest, Source, Turn
from app.providers.factory import build_chat_model, build_embedder, build_reranker
from app.text.analysis import default_analyzer
from tests.fakes import Act, collect
from tests.fakes.bedrock_server import FakeBedrock, access_denied, guardrail, reply, slow, throttle, validation

CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-multilingual-v3"
SOURCES = [
    Source(1, "Leave policy", "Employees get 20 days of paid leave per year. Unused days expire in March."),
    Source(2, "Expenses", "Travel expenses are reimbursed within 30 days of submission."),
]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeBedrock]:
    with FakeBedrock(stream_interval=0.05) as server:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL", "KS_AWS_REGION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", server.url)
        yield server


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "chat_provider": "bedrock",
        "chat_model": CLAUDE,
        "embedding_provider": "bedrock",
        "embedding_model": TITAN,
        "bedrock_retry_mode": "standard",
        "bedrock_max_attempts": 3,
        "bedrock_connect_timeout_s": 2,
        "bedrock_read_timeout_s": 5,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def chat(**overrides: Any) -> Any:
    return build_chat_model(settings(**overrides), default_analyzer())


def ask(question: str = "How many days of paid leave do I get?", **kw: Any) -> GenerationRequest:
    return GenerationRequest(question=question, sources=list(SOURCES), **kw)


# --- chat ------------------------------------------------------------------------------------------------
def test_grounded_answer_cites_source_and_reports_usage(fake: FakeBedrock) -> None:
    generation = chat(chat_max_tokens=300, chat_temperature=0.2).generate(ask())

    assert generation.text == "Employees get 20 days of paid leave per year. [1]"
    assert generation.model == CLAUDE and not generation.intervened
    assert generation.usage.input_tokens > 0 and generation.usage.output_tokens > 0
    (sent,) = fake.requests_to("converse")
    assert sent.path == f"/model/{CLAUDE}/converse"
    body = sent.body
    assert "ONLY" in body["system"][0]["text"] and "[n]" in body["system"][0]["text"]
    assert body["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.2}
    assert [m["role"] for m in body["messages"]] == ["user"]
    user = body["messages"][0]["content"][0]["text"]
    assert "[1] Leave policy\nEmployees get 20 days" in user and "[2] Expenses\nTravel" in user
    assert user.endswith("Question: How many days of paid leave do I get?")
    assert "guardrailConfig" not in body
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256")  # boto3 really signed it


def test_history_is_trimmed_to_the_budget_and_alternates(fake: FakeBedrock) -> None:
    history = [
        Turn("user", "old question " * 200),
        Turn("assistant", "old answer " * 200),
        Turn("user", "What about sick leave?"),
        Turn("assistant", "Sick leave is separate [1]."),
    ]
    chat(chat_max_history_tokens=100).generate(ask(history=history))

    messages = fake.bodies("converse")[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0]["text"] == "What about sick leave?"
    assert messages[1]["content"][0]["text"] == "Sick leave is separate."  # [1] meant last turn's source


def test_stream_yields_deltas_as_they_arrive_then_usage(fake: FakeBedrock) -> None:
    fake.stream_interval = 0.1
    started = time.perf_counter()
    deltas, final = collect(chat().stream(ask()))
    finished = time.perf_counter()

    assert len(deltas) >= 3
    assert "".join(text for _, text in deltas) == final.text == "Employees get 20 days of paid leave per year. [1]"
    # Frames arrive one by one: the first delta came well before the end of the stream.
    assert deltas[0][0] - started < finished - started - 0.2
    assert deltas[-1][0] - deltas[0][0] >= 0.15
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert fake.requests_to("converse-stream")[0].path == f"/model/{CLAUDE}/converse-stream"


def test_a_citation_to_an_unknown_source_passes_through_unchanged(fake: FakeBedrock) -> None:
    fake.script("converse", reply("Leave is 20 days [7]."))
    assert chat().generate(ask()).text == "Leave is 20 days [7]."


def test_guardrail_intervention_is_an_answer_not_an_error(fake: FakeBedrock) -> None:
    model = chat(bedrock_guardrail_id="gr-123", bedrock_guardrail_version="2", bedrock_guardrail_trace=True)
    fake.script("converse", guardrail("Sorry, this topic is blocked."))
    fake.script("converse-stream", guardrail("Sorry, this topic is blocked."))

    generation = model.generate(ask())
    _, streamed = collect(model.stream(ask()))

    assert generation.intervened and generation.text == "Sorry, this topic is blocked."
    assert streamed.intervened and streamed.text == "Sorry, this topic is blocked."
    expected = {"guardrailIdentifier": "gr-123", "guardrailVersion": "2", "trace": "enabled"}
    assert fake.bodies("converse")[0]["guardrailConfig"] == expected
    assert fake.bodies("converse-stream")[0]["guardrailConfig"] == expected


def test_a_request_may_pick_only_an_allowed_model(fake: FakeBedrock) -> None:
    other = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    model = chat(chat_allowed_models=[other])

    assert model.generate(ask(model=other)).model == other
    assert fake.requests_to("converse")[0].path == f"/model/{other}/converse"
    with pytest.raises(BadInput, match="not allowed"):
        model.generate(ask(model="meta.llama3-70b-instruct-v1:0"))
    assert len(fake.requests) == 1


def test_throttled_twice_then_answers(fake: FakeBedrock) -> None:
    fake.script("converse", *throttle(2))
    assert chat(bedrock_max_attempts=3).generate(ask()).text.endswith("[1]")
    assert len(fake.requests_to("converse")) == 3


def test_adaptive_retries_recover_from_throttling(fake: FakeBedrock) -> None:
    fake.script("converse", *throttle(1))
    assert chat(bedrock_retry_mode="adaptive", bedrock_max_attempts=2).generate(ask()).text.endswith("[1]")
    assert len(fake.requests_to("converse")) == 2


def test_throttling_past_the_retry_budget_is_429_with_retry_after(fake: FakeBedrock) -> None:
    fake.script("converse", *throttle(5))
    with pytest.raises(RateLimited) as info:
        chat(bedrock_max_attempts=2).generate(ask())
    assert info.value.status == 429
    assert int(info.value.headers["Retry-After"]) >= 1
    assert len(fake.requests_to("converse")) == 2


def test_throttling_mid_stream_is_429(fake: FakeBedrock) -> None:
    fake.script("converse-stream", Act(stream_error="throttlingException", message="slow down"))
    seen: list[str] = []
    with pytest.raises(RateLimited):
        for delta in chat().stream(ask()):
            seen.append(delta.text)
    assert seen and seen[0]  # the first delta was relayed before the failure


def test_access_denied_names_the_iam_action_and_model_access(fake: FakeBedrock) -> None:
    fake.script("converse", access_denied())
    with pytest.raises(ProviderUnavailable) as info:
        chat().generate(ask())
    detail = info.value.detail
    assert "bedrock:InvokeModel" in detail and "Model access" in detail
    assert f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}" in detail
    assert len(fake.requests) == 1  # not retried


def test_validation_error_names_the_model_setting(fake: FakeBedrock) -> None:
    fake.script("converse", validation("The provided model identifier is invalid."))
    with pytest.raises(ProviderError) as info:
        chat().generate(ask())
    assert info.value.status == 502
    assert "KS_CHAT_MODEL" in info.value.detail and "model identifier is invalid" in info.value.detail


def test_read_timeout_is_504(fake: FakeBedrock) -> None:
    fake.script("converse", slow(3))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeout):
        chat(bedrock_read_timeout_s=0.3, bedrock_max_attempts=1).generate(ask())
    assert time.perf_counter() - started < 2


def test_a_stream_that_stalls_is_504(fake: FakeBedrock) -> None:
    fake.stream_interval = 3
    with pytest.raises(ProviderTimeout):
        collect(chat(bedrock_read_timeout_s=0.3, bedrock_max_attempts=1).stream(ask()))


def test_logs_model_latency_and_tokens_but_no_text(fake: FakeBedrock, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.providers.bedrock"):
        chat().generate(ask())
    (line,) = [r.getMessage() for r in caplog.records if r.name == "app.providers.bedrock"]
    assert CLAUDE in line and "latency_ms=" in line and "input_tokens=" in line and "output_tokens=" in line
    assert "paid leave" not in line and "test" not in line


# --- embeddings ----------------------------------------------------------------------------------------
def test_titan_v2_one_request_per_text_with_dimensions_and_normalize(fake: FakeBedrock) -> None:
    embedder = build_embedder(settings(embedding_dimensions=512, embed_concurrency=2))
    texts = ["paid leave per year", "annual paid leave days", "server rack cooling", "paid leave per year"]
    vectors = embedder.embed_documents(texts)

    assert embedder.dimension == 512 and vectors.shape == (4, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[3])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    bodies = fake.bodies("invoke")
    assert len(bodies) == 4 and sorted(b["inputText"] for b in bodies) == sorted(texts)
    assert all(b["dimensions"] == 512 and b["normalize"] is True for b in bodies)
    assert all(r.path == f"/model/{TITAN}/invoke" for r in fake.requests_to("invoke"))

    query = embedder.embed_query("paid leave")
    assert query.shape == (512,) and len(fake.requests_to("invoke")) == 5


def test_titan_without_server_normalization_is_still_unit_length(fake: FakeBedrock) -> None:
    embedder = build_embedder(settings(embedding_normalize=False))
    vectors = embedder.embed_documents(["paid leave", "expenses"])
    assert fake.bodies("invoke")[0]["normalize"] is False
    assert vectors.shape == (2, 1024) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_cohere_v3_batches_of_96_and_input_types(fake: FakeBedrock) -> None:
    embedder = build_embedder(settings(embedding_model=COHERE))
    texts = [f"document number {i} about topic {i % 7}" for i in range(100)]
    vectors = embedder.embed_documents(texts)
    query = embedder.embed_query("topic 3")

    assert vectors.shape == (100, 1024) and query.shape == (1024,)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # Cohere's raw vectors are not
    bodies = fake.bodies("invoke")
    documents = [b for b in bodies if b["input_type"] == "search_document"]
    assert sorted(len(b["texts"]) for b in documents) == [4, 96]
    assert [b["texts"] for b in bodies if b["input_type"] == "search_query"] == [["topic 3"]]
    assert [t for b in sorted(documents, key=lambda b: -len(b["texts"])) for t in b["texts"]] == texts


def test_embedding_errors_name_the_embedding_setting(fake: FakeBedrock) -> None:
    embedder = build_embedder(settings())
    fake.script("invoke", validation("Malformed input request"))
    with pytest.raises(ProviderError, match="KS_EMBEDDING_MODEL"):
        embedder.embed_documents(["a text"])


# --- reranking -----------------------------------------------------------------------------------------
def test_reranker_maps_results_to_input_indices_best_first(fake: FakeBedrock) -> None:
    reranker = build_reranker(settings(rerank_provider="bedrock"))
    assert reranker is not None
    texts = ["server rack cooling", "paid leave per year for employees", "paid leave"]
    ranked = reranker.rerank("paid leave per year", texts, top_n=2)

    assert [i for i, _ in ranked] == [1, 2]
    assert ranked[0][1] >= ranked[1][1] > 0
    (body,) = fake.bodies("rerank")
    config = body["rerankingConfiguration"]["bedrockRerankingConfiguration"]
    assert config["numberOfResults"] == 2
    assert config["modelConfiguration"]["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0"
    assert [s["inlineDocumentSource"]["textDocument"]["text"] for s in body["sources"]] == texts


# --- settings ------------------------------------------------------------------------------------------
def test_settings_that_cannot_work_fail_at_start(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_reranker(settings()) is None
    with pytest.raises(ConfigurationError, match="KS_CHAT_MODEL"):
        chat(chat_model="extractive")
    with pytest.raises(ConfigurationError, match="GUARDRAIL"):
        chat(bedrock_guardrail_id="gr-123")
    with pytest.raises(ConfigurationError, match="256, 512 or 1024"):
        build_embedder(settings(embedding_dimensions=300))
    with pytest.raises(ConfigurationError, match="KS_EMBEDDING_MODEL"):
        build_embedder(settings(embedding_model="amazon.titan-embed-image-v1"))
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigurationError, match="KS_AWS_REGION"):
        chat()
    assert chat(aws_region="eu-central-1").generate(ask()).text.endswith("[1]")
