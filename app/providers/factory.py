"""Build providers from settings. Each SDK is imported only inside its own branch."""

from __future__ import annotations

from app.core.config import Settings
from app.core.errors import ConfigurationError
from app.providers.base import ChatModel, Embedder, Reranker
from app.text.analysis import Analyzer

# The local defaults of KS_EMBEDDING_MODEL / KS_CHAT_MODEL mean nothing to a remote provider.
_LOCAL_MODELS = {"multilingual-e5-small-q4", "extractive"}


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedding_provider == "local":
        from app.providers.e5 import E5Embedder

        return E5Embedder()
    if settings.embedding_provider == "bedrock":
        from app.providers.bedrock import BedrockEmbedder, _client

        _require_model("KS_EMBEDDING_MODEL", settings.embedding_model, "amazon.titan-embed-text-v2:0")
        return BedrockEmbedder(
            _client("bedrock-runtime", settings),
            settings.embedding_model,
            dimensions=settings.embedding_dimensions,
            normalize=settings.embedding_normalize,
            concurrency=settings.embed_concurrency,
        )
    raise ConfigurationError(f"KS_EMBEDDING_PROVIDER={settings.embedding_provider!r}: use 'local' or 'bedrock'")


def build_chat_model(settings: Settings, analyzer: Analyzer) -> ChatModel:
    if settings.chat_provider == "local":
        from app.providers.local import ExtractiveAnswerer

        return ExtractiveAnswerer(
            analyzer, max_sentences=settings.chat_max_sentences, min_coverage=settings.chat_min_coverage
        )
    if settings.chat_provider == "bedrock":
        from app.providers.bedrock import BedrockChatModel, _client

        _require_model("KS_CHAT_MODEL", settings.chat_model, "anthropic.claude-3-5-haiku-20241022-v1:0")
        if bool(settings.bedrock_guardrail_id) != bool(settings.bedrock_guardrail_version):
            raise ConfigurationError("set both KS_BEDROCK_GUARDRAIL_ID and KS_BEDROCK_GUARDRAIL_VERSION, or neither")
        return BedrockChatModel(
            _client("bedrock-runtime", settings),
            settings.chat_model,
            guardrail_id=settings.bedrock_guardrail_id,
            guardrail_version=settings.bedrock_guardrail_version,
            guardrail_trace=settings.bedrock_guardrail_trace,
            max_tokens=settings.chat_max_tokens,
            temperature=settings.chat_temperature,
            max_history_tokens=settings.chat_max_history_tokens,
            allowed_models=settings.chat_allowed_models,
        )
    if settings.chat_provider == "openai":
        from app.providers.openai_compat import OpenAICompatChatModel

        _require_model("KS_CHAT_MODEL", settings.chat_model, "the name the server serves, e.g. llama3.1:8b")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAICompatChatModel(
            settings.openai_base_url,
            settings.chat_model,
            api_key=key,
            timeout_s=settings.openai_timeout_s,
            max_tokens=settings.chat_max_tokens,
            temperature=settings.chat_temperature,
            max_history_tokens=settings.chat_max_history_tokens,
            allowed_models=settings.chat_allowed_models,
        )
    raise ConfigurationError(f"KS_CHAT_PROVIDER={settings.chat_provider!r}: use 'local', 'bedrock' or 'openai'")


def build_reranker(settings: Settings) -> Reranker | None:
    if settings.rerank_provider == "none":
        return None
    if settings.rerank_provider == "bedrock":
        from app.providers.bedrock import BedrockReranker, _client

        return BedrockReranker(_client("bedrock-agent-runtime", settings), settings.rerank_model)
    raise ConfigurationError(f"KS_RERANK_PROVIDER={settings.rerank_provider!r}: use 'none' or 'bedrock'")


def _require_model(setting: str, value: str, example: str) -> None:
    if value in _LOCAL_MODELS:
        raise ConfigurationError(f"{setting}={value!r} is a local model: set {setting} (e.g. {example})")
