"""The OpenSearch chunk store, split by what each part does: ``schema`` (index name, settings, mapping),
``queries`` (pure request-body builders), ``indices`` (alias and index management, health), ``client`` (node
URLs, TLS, basic auth or SigV4) and ``store`` (the ChunkStore that ties them together)."""

from app.stores.vector.opensearch.queries import HIDDEN, MAX_WINDOW
from app.stores.vector.opensearch.schema import LAYOUT_VERSION, index_body, index_name
from app.stores.vector.opensearch.store import OpenSearchChunkStore

__all__ = ["HIDDEN", "LAYOUT_VERSION", "MAX_WINDOW", "OpenSearchChunkStore", "index_body", "index_name"]
