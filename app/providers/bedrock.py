"""Amazon Bedrock: chat through the Converse API, Titan / Cohere embeddings through InvokeModel, and the
Rerank API of bedrock-agent-runtime.

boto3 is blocking, so these are plain sync methods; callers run them in a thread pool. Retries (mode and
attempts) and timeouts are botocore's, set once in ``_client``; errors are translated here, at the edge,
into the app's error family with a detail that says what to fix. Logs carry the model, latency and token
counts, never request bodies, document text or credentials.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import boto3
import numpy as np
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from app.core.config import Settings
from app.core.errors import (
    AppError,
    ConfigurationError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from app.providers.base import Delta, Generation, GenerationRequest, Usage
from app.providers.prompt import build_prompt, pick_model

log = logging.getLogger(__name__)

T = TypeVar("T")

# Retry-After sent to our callers when Bedrock still throttles after botocore's retries, unless Bedrock
# itself said how long to wait.
DEFAULT_RETRY_AFTER_S = 5
_THROTTLING = {"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"}
_UNAVAILABLE = {"ServiceUnavailableException", "ModelNotReadyException", "InternalServerException"}
_INTERVENED = {"guardrail_intervened", "content_filtered"}
# Cross-region (system-defined) inference profile ids: the model id behind a geography prefix.
_PROFILE = re.compile(r"(?:us|us-gov|eu|apac|jp|au|ca|global)\.(?=[a-z])")
COHERE_MAX_BATCH = 96  # Cohere Embed v3 takes at most 96 texts per request


def _client(service: str, settings: Settings) -> Any:
    """A boto3 client with explicit retries and timeouts. Region None: boto3's chain (AWS_REGION, profile)."""
    config = Config(
        region_name=settings.aws_region,
        # total_max_attempts counts the first call too; botocore's "max_attempts" key counts only retries.
        retries={"mode": settings.bedrock_retry_mode, "total_max_attempts": settings.bedrock_max_attempts},
        connect_timeout=settings.bedrock_connect_timeout_s,
        read_timeout=settings.bedrock_read_timeout_s,
        max_pool_connections=max(10, settings.embed_concurrency),
    )
    # A fresh session per client: it reads the environment now (endpoint overrides, credentials chain).
    try:
        return boto3.session.Session().client(service, config=config)
    except NoRegionError as exc:
        raise ConfigurationError("no AWS region for Bedrock: set KS_AWS_REGION (or AWS_REGION)") from exc


def _model_arn(client: Any, model_id: str) -> str:
    if model_id.startswith("arn:"):
        return model_id
    return f"arn:{client.meta.partition}:bedrock:{client.meta.region_name}::foundation-model/{model_id}"


def _policy_resources(client: Any, model_id: str) -> str:
    """The ARNs an IAM policy must cover to invoke ``model_id``, for an access-denied detail."""
    profile = _PROFILE.match(model_id)
    if profile is None:
        return f"{_model_arn(client, model_id)} (for a cross-region inference profile, on the profile and its models)"
    partition, region = client.meta.partition, client.meta.region_name
    return (
        f"the inference profile arn:{partition}:bedrock:{region}:<account-id>:inference-profile/{model_id} and "
        f"its foundation model in every destination region, arn:{partition}:bedrock:*::foundation-model/"
        f"{model_id[profile.end() :]}"
    )


def _call(client: Any, fn: Callable[[], T], *, model_id: str, setting: str, action: str) -> T:
    try:
        return fn()
    except (BotoCoreError, ClientError, urllib3.exceptions.HTTPError) as exc:
        raise _translate(exc, client, model_id=model_id, setting=setting, action=action) from exc


def _translate(exc: Exception, client: Any, *, model_id: str, setting: str, action: str) -> AppError:
    """A botocore error as the app error a caller can act on (the detail names the setting or IAM action)."""
    region = client.meta.region_name
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        code = code[:1].upper() + code[1:]  # mid-stream errors arrive as "throttlingException"
        message = str(error.get("Message", "")) or code
        if code in _THROTTLING:
            return RateLimited(
                f"Bedrock is throttling {model_id} ({code}) after retries: {message}. Retry later, or raise "
                f"the model's quota in Service Quotas for {region}.",
                headers={"Retry-After": _retry_after(exc.response)},
            )
        if code == "AccessDeniedException":
            return ProviderUnavailable(
                f"Bedrock denied access to {model_id} in {region}: {message}. Grant this service's IAM role "
                f"{action} on {_policy_resources(client, model_id)}, and check that the model is enabled for this "
                f"account and region in the Bedrock console (Model access, or the Model catalog where that page is "
                f"retired; Anthropic models need the one-time use-case form)."
            )
        if code in ("ValidationException", "ResourceNotFoundException"):
            return ProviderError(
                f"Bedrock rejected the request to {model_id} in {region} ({code}): {message}. Check that "
                f"{setting} names a model (or inference profile) available in {region}."
            )
        if code == "ModelTimeoutException":
            return ProviderTimeout(f"{model_id} took too long to answer: {message}")
        if code in _UNAVAILABLE:
            return ProviderUnavailable(f"Bedrock is unavailable for {model_id} ({code}): {message}")
        return ProviderError(f"Bedrock failed for {model_id} ({code or 'unknown error'}): {message}")
    if isinstance(exc, ReadTimeoutError | urllib3.exceptions.ReadTimeoutError):
        return ProviderTimeout(
            f"{model_id} did not answer within KS_BEDROCK_READ_TIMEOUT_S after KS_BEDROCK_MAX_ATTEMPTS attempts"
        )
    if isinstance(exc, ConnectTimeoutError):
        return ProviderTimeout(f"could not connect to Bedrock in {region} within KS_BEDROCK_CONNECT_TIMEOUT_S")
    if isinstance(exc, EndpointConnectionError):
        return ProviderUnavailable(f"cannot reach the Bedrock endpoint for {region}: {exc}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderUnavailable(
            "no AWS credentials found for Bedrock: give the service an IAM role (instance profile, ECS task "
            "role, IRSA) or set AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return ProviderError(f"Bedrock call to {model_id} failed: {type(exc).__name__}")


def _retry_after(response: dict[str, Any]) -> str:
    """Seconds, from Bedrock's own hint (x-amz-retry-after, in ms) when it gave one."""
    hint = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-retry-after", "")
    return str(max(1, -(-int(hint) // 1000))) if hint.isdigit() else str(DEFAULT_RETRY_AFTER_S)


class BedrockChatModel:
    """Grounded answers through Converse / ConverseStream, optionally behind a Bedrock guardrail."""

    def __init__(
        self,
        client: Any,
        model_id: str,
        *,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        max_history_tokens: int = 2000,
        allowed_models: Sequence[str] = (),
        guardrail_id: str | None = None,
        guardrail_version: str | None = None,
        guardrail_trace: bool = False,
    ) -> None:
        self._client = client
        self.model_id = model_id
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._max_history_tokens = max_history_tokens
        self._allowed = list(allowed_models)
        self._guardrail: dict[str, str] | None = None
        if guardrail_id and guardrail_version:
            self._guardrail = {
                "guardrailIdentifier": guardrail_id,
                "guardrailVersion": guardrail_version,
                "trace": "enabled" if guardrail_trace else "disabled",
            }

    def _request(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        model = pick_model(request.model, self.model_id, self._allowed)
        prompt = build_prompt(request, max_history_tokens=self._max_history_tokens)
        messages = [{"role": t.role, "content": [{"text": t.content}]} for t in prompt.history]
        messages.append({"role": "user", "content": [{"text": prompt.user}]})
        kwargs: dict[str, Any] = {
            "modelId": model,
            "system": [{"text": prompt.system}],
            "messages": messages,
            "inferenceConfig": {"maxTokens": self._max_tokens, "temperature": self._temperature},
        }
        if self._guardrail is not None:
            kwargs["guardrailConfig"] = dict(self._guardrail)
        return model, kwargs

    def _call(self, model: str, fn: Callable[[], T], action: str) -> T:
        if self._guardrail is not None:
            action += " (and bedrock:ApplyGuardrail on the guardrail)"
        return _call(self._client, fn, model_id=model, setting="KS_CHAT_MODEL", action=action)

    def generate(self, request: GenerationRequest) -> Generation:
        model, kwargs = self._request(request)
        started = time.perf_counter()
        response = self._call(model, partial(self._client.converse, **kwargs), "bedrock:InvokeModel")
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(block.get("text", "") for block in content)
        stop = response.get("stopReason", "")
        usage = _usage(response.get("usage"))
        _log_chat("converse", model, started, usage, stop)
        return Generation(text=text, model=model, usage=usage, intervened=stop in _INTERVENED)

    def stream(self, request: GenerationRequest) -> Iterator[Delta]:
        model, kwargs = self._request(request)
        action = "bedrock:InvokeModelWithResponseStream"
        started = time.perf_counter()
        response = self._call(model, partial(self._client.converse_stream, **kwargs), action)
        events = response["stream"]
        pieces: list[str] = []
        stop = ""
        usage = Usage()
        try:
            iterator = iter(events)
            while True:
                event = self._call(model, lambda: next(iterator, None), action)
                if event is None:
                    break
                if "contentBlockDelta" in event:
                    text = event["contentBlockDelta"].get("delta", {}).get("text", "")
                    if text:
                        pieces.append(text)
                        yield Delta(text=text)
                elif "messageStop" in event:
                    stop = event["messageStop"].get("stopReason", "")
                elif "metadata" in event:
                    usage = _usage(event["metadata"].get("usage"))
        finally:
            events.close()  # also when the consumer stops early: frees the connection
        _log_chat("converse-stream", model, started, usage, stop)
        yield Delta(final=Generation(text="".join(pieces), model=model, usage=usage, intervened=stop in _INTERVENED))


def _usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    return Usage(input_tokens=int(raw.get("inputTokens", 0)), output_tokens=int(raw.get("outputTokens", 0)))


def _log_chat(operation: str, model: str, started: float, usage: Usage, stop: str) -> None:
    ms, tokens_in, tokens_out = (time.perf_counter() - started) * 1000, usage.input_tokens, usage.output_tokens
    fmt = "bedrock %s model=%s latency_ms=%d input_tokens=%d output_tokens=%d stop_reason=%s"
    log.info(fmt, operation, model, ms, tokens_in, tokens_out, stop)


class BedrockEmbedder:
    """Titan Text Embeddings (v1, v2) or Cohere Embed v3 through InvokeModel; vectors L2-normalized here."""

    def __init__(
        self,
        client: Any,
        model_id: str,
        *,
        dimensions: int | None = None,
        normalize: bool = True,
        concurrency: int = 4,
    ) -> None:
        self._client = client
        self.model_id = model_id
        self._normalize = normalize
        self._concurrency = concurrency
        if "titan-embed-text-v2" in model_id:
            self._family = "titan-v2"
            if dimensions not in (None, 256, 512, 1024):
                raise ConfigurationError(f"KS_EMBEDDING_DIMENSIONS={dimensions}: Titan v2 supports 256, 512 or 1024")
            self.dimension = dimensions or 1024
        elif "titan-embed-text-v1" in model_id or "titan-embed-g1-text" in model_id:
            self._family, self.dimension = "titan-v1", 1536
        elif "cohere.embed-" in model_id and "-v3" in model_id:
            self._family, self.dimension = "cohere-v3", 1024
        else:
            raise ConfigurationError(
                f"KS_EMBEDDING_MODEL={model_id!r} is not supported: use amazon.titan-embed-text-v2:0, "
                "amazon.titan-embed-text-v1, cohere.embed-multilingual-v3 or cohere.embed-english-v3"
            )
        if dimensions is not None and dimensions != self.dimension:
            raise ConfigurationError(
                f"KS_EMBEDDING_DIMENSIONS={dimensions}: {model_id} has {self.dimension} dimensions"
            )

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), "search_document")

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text], "search_query")[0]

    def _embed(self, texts: list[str], input_type: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        started = time.perf_counter()
        if self._family == "cohere-v3":
            batches = [texts[i : i + COHERE_MAX_BATCH] for i in range(0, len(texts), COHERE_MAX_BATCH)]
            results = self._map(lambda batch: self._cohere(batch, input_type), batches)
        else:  # Titan embeds one text per request
            results = self._map(self._titan, texts)
        raw = np.asarray([v for batch, _ in results for v in batch], dtype=np.float32)
        raw = raw.reshape(len(texts), self.dimension)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        vectors = raw / np.where(norms == 0, 1, norms)  # the Embedder protocol promises unit vectors
        ms, tokens_in = (time.perf_counter() - started) * 1000, sum(tokens for _, tokens in results)
        fmt = "bedrock embed model=%s texts=%d requests=%d latency_ms=%d input_tokens=%d"
        log.info(fmt, self.model_id, len(texts), len(results), ms, tokens_in)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _map(self, fn: Callable[[Any], T], items: list[Any]) -> list[T]:
        if len(items) == 1 or self._concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(items))) as pool:
            return list(pool.map(fn, items))  # keeps input order; the first error propagates

    def _invoke(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        def call() -> tuple[dict[str, Any], int]:
            response = self._client.invoke_model(
                modelId=self.model_id,
                body=json.dumps(body).encode(),
                contentType="application/json",
                accept="application/json",
            )
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            return json.loads(response["body"].read()), int(headers.get("x-amzn-bedrock-input-token-count", 0))

        return _call(
            self._client, call, model_id=self.model_id, setting="KS_EMBEDDING_MODEL", action="bedrock:InvokeModel"
        )

    def _titan(self, text: str) -> tuple[list[list[float]], int]:
        body: dict[str, Any] = {"inputText": text}
        if self._family == "titan-v2":
            body |= {"dimensions": self.dimension, "normalize": self._normalize}
        payload, tokens = self._invoke(body)
        return [payload["embedding"]], tokens or int(payload.get("inputTextTokenCount", 0))

    def _cohere(self, texts: list[str], input_type: str) -> tuple[list[list[float]], int]:
        payload, tokens = self._invoke({"texts": texts, "input_type": input_type, "truncate": "END"})
        return payload["embeddings"], tokens


class BedrockReranker:
    """Bedrock's Rerank API (amazon.rerank-v1:0, cohere.rerank-v3-5:0) over inline text documents."""

    MAX_TEXT = 32_000  # characters, per query and per document

    def __init__(self, client: Any, model_id: str) -> None:
        self._client = client
        self.model_id = model_id

    def rerank(self, query: str, texts: Sequence[str], top_n: int) -> list[tuple[int, float]]:
        if not texts or top_n <= 0:
            return []
        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "queries": [{"type": "TEXT", "textQuery": {"text": query[: self.MAX_TEXT]}}],
            "sources": [
                {
                    "type": "INLINE",
                    "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": t[: self.MAX_TEXT]}},
                }
                for t in texts
            ],
            "rerankingConfiguration": {
                "type": "BEDROCK_RERANKING_MODEL",
                "bedrockRerankingConfiguration": {
                    "numberOfResults": min(top_n, len(texts)),
                    "modelConfiguration": {"modelArn": _model_arn(self._client, self.model_id)},
                },
            },
        }
        action = "bedrock:Rerank and bedrock:InvokeModel"
        call = partial(self._client.rerank, **kwargs)
        response = _call(self._client, call, model_id=self.model_id, setting="KS_RERANK_MODEL", action=action)
        # numberOfResults <= 1000 sources: one page holds every result, no nextToken to follow.
        results = [(int(r["index"]), float(r["relevanceScore"])) for r in response.get("results", [])]
        results.sort(key=lambda r: -r[1])
        ms = (time.perf_counter() - started) * 1000
        log.info("bedrock rerank model=%s documents=%d latency_ms=%d", self.model_id, len(texts), ms)
        return results[:top_n]
