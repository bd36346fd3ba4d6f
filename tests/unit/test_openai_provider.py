"""The OpenAI-compatible chat model against a wire-level fake server on 127.0.0.1 (no patching)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.core.config import Settings
from app.core.errors import BadInput, ProviderError, ProviderTimeout, ProviderUnavailable, RateLimited
from app.providers.base import GenerationRequest, Source, Turn
from app.providers.factory import build_chat_model
from app.text.analysis import default_analyzer
from tests.fakes import Act, collect
from tests.fakes.openai_server import FakeOpenAI, error, reply, slow

MODEL = "llama3.1:8b"
SOURCES = [
    Source(1, "休暇規程", "年次有給休暇は年20日です。未使用分は3月に失効します。"),
    Source(2, "Expenses", "Travel expenses are reimbursed within 30 days of submission."),
]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(stream_interval=0.05) as server:
        yield server


def model(fake: FakeOpenAI, **overrides: Any) -> Any:
    values: dict[str, Any] = {"chat_provider": "openai", "chat_model": MODEL, "openai_base_url": fake.base_url}
    settings = Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]
    return build_chat_model(settings, default_analyzer())


def ask(question: str = "有給休暇は何日ありますか？", **kw: Any) -> GenerationRequest:
    return GenerationRequest(question=question, sources=list(SOURCES), **kw)


def test_grounded_answer_with_usage_and_the_request_sent(fake: FakeOpenAI) -> None:
    history = [Turn("user", "こんにちは"), Turn("assistant", "こんにちは。ご用件は？")]
    generation = model(fake, chat_max_tokens=256, openai_api_key="sk-local").generate(ask(history=history))

    assert generation.text == "年次有給休暇は年20日です。 [1]"
    assert generation.model == MODEL and not generation.intervened
    assert generation.usage.input_tokens > 0 and generation.usage.output_tokens > 0
    (sent,) = fake.requests
    assert sent.headers["authorization"] == "Bearer sk-local"
    body = sent.body
    assert body["model"] == MODEL and body["stream"] is False
    assert body["max_tokens"] == 256 and body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert "ONLY" in body["messages"][0]["content"] and "language of the question" in body["messages"][0]["content"]
    assert "[1] 休暇規程\n年次有給休暇は年20日です。" in body["messages"][-1]["content"]


def test_stream_relays_sse_deltas_as_they_arrive(fake: FakeOpenAI) -> None:
    fake.stream_interval = 0.1
    started = time.perf_counter()
    deltas, final = collect(model(fake).stream(ask()))
    finished = time.perf_counter()

    assert len(deltas) >= 3
    assert "".join(t for _, t in deltas) == final.text == "年次有給休暇は年20日です。 [1]"
    assert deltas[0][0] - started < finished - started - 0.2
    assert final.usage.output_tokens > 0  # from the include_usage chunk
    body = fake.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_unknown_citation_passes_through_and_content_filter_is_an_intervention(fake: FakeOpenAI) -> None:
    fake.script("chat", reply("20日です [7]。"), reply("I can't help with that.", finish_reason="content_filter"))
    chat = model(fake)
    assert chat.generate(ask()).text == "20日です [7]。"
    filtered = chat.generate(ask())
    assert filtered.intervened and filtered.text == "I can't help with that."


def test_only_allowed_models_may_be_picked(fake: FakeOpenAI) -> None:
    chat = model(fake, chat_allowed_models=["qwen2.5:7b"])
    assert chat.generate(ask(model="qwen2.5:7b")).model == "qwen2.5:7b"
    with pytest.raises(BadInput):
        chat.generate(ask(model="gpt-4o"))
    assert [r.body["model"] for r in fake.requests] == ["qwen2.5:7b"]


def test_429_keeps_the_servers_retry_after(fake: FakeOpenAI) -> None:
    fake.script("chat", error(429, "busy", headers={"Retry-After": "7"}), error(429, "busy"))
    with pytest.raises(RateLimited) as info:
        model(fake).generate(ask())
    assert info.value.headers == {"Retry-After": "7"}
    with pytest.raises(RateLimited) as info:
        collect(model(fake).stream(ask()))
    assert info.value.headers["Retry-After"].isdigit()


@pytest.mark.parametrize(
    ("status", "expected", "names"),
    [
        (401, ProviderUnavailable, "KS_OPENAI_API_KEY"),
        (404, ProviderError, "KS_CHAT_MODEL"),
        (400, ProviderError, "context length"),
        (503, ProviderUnavailable, "loading"),
    ],
)
def test_http_errors_map_to_the_error_family(fake: FakeOpenAI, status: int, expected: type, names: str) -> None:
    message = {401: "invalid api key", 404: "model 'llama3.1:8b' not found", 400: "context length exceeded"}
    fake.script("chat", error(status, message.get(status, "model is loading")))
    with pytest.raises(expected) as info:
        model(fake).generate(ask())
    assert names in info.value.detail  # type: ignore[attr-defined]
    assert info.value.status == expected.status  # type: ignore[attr-defined]


def test_error_mid_stream_is_a_provider_error(fake: FakeOpenAI) -> None:
    fake.script("chat", Act(stream_error="server_error", message="CUDA out of memory"))
    with pytest.raises(ProviderError, match="CUDA out of memory"):
        collect(model(fake).stream(ask()))


def test_timeouts_and_unreachable_server(fake: FakeOpenAI) -> None:
    fake.script("chat", slow(3))
    started = time.perf_counter()
    with pytest.raises(ProviderTimeout, match="KS_OPENAI_TIMEOUT_S"):
        model(fake, openai_timeout_s=0.3).generate(ask())
    assert time.perf_counter() - started < 2

    fake.stream_interval = 3
    with pytest.raises(ProviderTimeout):
        collect(model(fake, openai_timeout_s=0.3).stream(ask()))

    url = fake.base_url
    fake.stop()
    with pytest.raises(ProviderUnavailable, match="KS_OPENAI_BASE_URL"):
        model(fake, openai_base_url=url).generate(ask())


def test_logs_carry_no_prompt_or_key(fake: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.providers.openai_compat"):
        model(fake, openai_api_key="sk-secret").generate(ask())
    lines = [r.getMessage() for r in caplog.records if r.name == "app.providers.openai_compat"]
    assert len(lines) == 1 and MODEL in lines[0] and "output_tokens=" in lines[0]
    assert "sk-secret" not in lines[0] and "有給" not in lines[0]
