"""Build the chunk store chosen by KS_VECTOR_STORE."""

from __future__ import annotations

from app.core.config import Settings
from app.core.errors import ConfigurationError
from app.stores.vector.base import ChunkStore


def build_chunk_store(settings: Settings) -> ChunkStore:
    if settings.vector_store == "embedded":
        from app.stores.vector.embedded import EmbeddedChunkStore

        return EmbeddedChunkStore(settings.data_dir / "chunks.db", context_weight=settings.keyword_context_weight)
    if settings.vector_store == "opensearch":
        try:
            from app.stores.vector.opensearch import OpenSearchChunkStore
        except ImportError as exc:  # pragma: no cover - depends on installed extras
            raise ConfigurationError(
                "KS_VECTOR_STORE=opensearch needs the opensearch extra: pip install 'knowledge-search[opensearch]'"
            ) from exc
        return OpenSearchChunkStore.from_settings(settings)
    raise ConfigurationError(f"unknown KS_VECTOR_STORE {settings.vector_store!r}")
