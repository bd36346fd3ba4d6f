"""Chat through an on-prem OpenAI-compatible server (vLLM, Ollama, llama.cpp server): POST
``{base_url}/chat/completions``, whole or streamed as server-sent events.

Same prompt and same error family as the Bedrock model: the detail names the setting to fix. Logs carry
the model, latency and token counts, never prompts, document text or the API key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from app.core.errors import AppError, ProviderError, ProviderTimeout, ProviderUnavailable, RateLimited
from app.providers.base import Delta, Generation, GenerationRequest, Usage
from app.providers.prompt import build_prompt, pick_model

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 5
_INTERVENED = {"content_filter"}


class OpenAICompatChatModel:
    def __init__(
        self,
        base_url: str,
        model_id: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        max_history_tokens: int = 2000,
        allowed_models: Sequence[str] = (),
    ) -> None:
        self.model_id = model_id
        self._base_url = base_url.rstrip("/")
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._max_history_tokens = max_history_tokens
        self._allowed = list(allowed_models)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self._base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
        )

    def close(self) -> None:
        self._http.close()

    def _body(self, request: GenerationRequest, *, stream: bool) -> tuple[str, dict[str, Any]]:
        model = pick_model(request.model, self.model_id, self._allowed)
        prompt = build_prompt(request, max_history_tokens=self._max_history_tokens)
        messages = [{"role": "system", "content": prompt.system}]
        messages += [{"role": t.role, "content": t.content} for t in prompt.history]
        messages.append({"role": "user", "content": prompt.user})
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": self._max_tokens,
            "temperature": self._temperature,
            "stream": stream,
        }
        if stream:  # vLLM, Ollama and llama.cpp then send usage in a last chunk
            body["stream_options"] = {"include_usage": True}
        return model, body

    def generate(self, request: GenerationRequest) -> Generation:
        model, body = self._body(request, stream=False)
        started = time.perf_counter()
        try:
            response = self._http.post("/chat/completions", json=body)
            if response.status_code >= 400:
                raise self._status_error(response, model)
            payload = response.json()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model) from exc
        except ValueError as exc:  # not JSON
            raise ProviderError(f"{self._base_url} did not answer with JSON: is KS_OPENAI_BASE_URL right?") from exc
        choice = (payload.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        finish = choice.get("finish_reason") or ""
        usage = _usage(payload.get("usage"))
        _log(model, started, usage, finish)
        return Generation(text=text, model=payload.get("model") or model, usage=usage, intervened=finish in _INTERVENED)

    def stream(self, request: GenerationRequest) -> Iterator[Delta]:
        model, body = self._body(request, stream=True)
        started = time.perf_counter()
        pieces: list[str] = []
        finish = ""
        usage = Usage()
        try:
            with self._http.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response, model)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, "event:" lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = _json(data)
                    if "error" in chunk:
                        raise ProviderError(f"{model} failed mid-answer: {_message(chunk)}")
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            pieces.append(text)
                            yield Delta(text=text)
                        finish = choice.get("finish_reason") or finish
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, model) from exc
        _log(model, started, usage, finish)
        text = "".join(pieces)
        yield Delta(final=Generation(text=text, model=model, usage=usage, intervened=finish in _INTERVENED))

    # --- errors ----------------------------------------------------------------------------------
    def _status_error(self, response: httpx.Response, model: str) -> AppError:
        status = response.status_code
        message = _message(_json(response.text)) or response.text[:300]
        where = f"{self._base_url} answered {status}"
        if status == 429:
            retry_after = response.headers.get("retry-after", "")
            return RateLimited(
                f"{where} (too many requests): {message}",
                headers={"Retry-After": retry_after if retry_after.isdigit() else str(DEFAULT_RETRY_AFTER_S)},
            )
        if status in (401, 403):
            return ProviderUnavailable(f"{where}: {message}. Check KS_OPENAI_API_KEY.")
        if status == 404:
            return ProviderError(
                f"{where}: {message}. Check KS_CHAT_MODEL={model!r} is served there and that KS_OPENAI_BASE_URL "
                "ends with the API prefix (usually /v1)."
            )
        if status in (502, 503):
            return ProviderUnavailable(f"{where}: {message}")
        if status == 504:
            return ProviderTimeout(f"{where}: {message}")
        return ProviderError(f"{where} for model {model!r}: {message}")

    def _transport_error(self, exc: httpx.HTTPError, model: str) -> AppError:
        if isinstance(exc, httpx.ConnectTimeout):
            return ProviderTimeout(f"could not connect to {self._base_url} in time (KS_OPENAI_BASE_URL)")
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeout(f"{model} at {self._base_url} did not answer within KS_OPENAI_TIMEOUT_S")
        if isinstance(exc, httpx.ConnectError):
            return ProviderUnavailable(f"cannot reach {self._base_url}: is the model server up? (KS_OPENAI_BASE_URL)")
        return ProviderError(f"{model} at {self._base_url} failed: {type(exc).__name__}")


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _message(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message", ""))
    if isinstance(error, str):  # Ollama and llama.cpp
        return error
    return str(payload.get("message") or payload.get("detail") or "")


def _usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    return Usage(input_tokens=int(raw.get("prompt_tokens", 0)), output_tokens=int(raw.get("completion_tokens", 0)))


def _log(model: str, started: float, usage: Usage, finish: str) -> None:
    log.info(
        "openai-compatible chat model=%s latency_ms=%d input_tokens=%d output_tokens=%d finish_reason=%s",
        model,
        (time.perf_counter() - started) * 1000,
        usage.input_tokens,
        usage.output_tokens,
        finish,
    )
