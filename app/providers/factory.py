"""Build providers from settings. Each SDK is imported only inside its own branch."""

from __future__ import annotations

from app.core.config import Settings
from app.core.errors import ConfigurationError
from app.providers.base import ChatModel, Embedder, Reranker
from app.search.analysis import Analyzer


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedding_provider == "local":
        from app.providers.local import E5Embedder

        return E5Embedder()
    raise ConfigurationError(
        f"KS_EMBEDDING_PROVIDER={settings.embedding_provider!r} is not available in this build: use 'local'"
    )


def build_chat_model(settings: Settings, analyzer: Analyzer) -> ChatModel:
    if settings.chat_provider == "local":
        from app.providers.local import ExtractiveAnswerer

        return ExtractiveAnswerer(analyzer, max_sentences=settings.chat_max_sentences)
    raise ConfigurationError(f"KS_CHAT_PROVIDER={settings.chat_provider!r} is not available in this build: use 'local'")


def build_reranker(settings: Settings) -> Reranker | None:
    return None
