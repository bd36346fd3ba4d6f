"""`knowledge-search reindex`: rebuild the chunk index with another embedder from the stored chunks.

Both stores: chunks indexed with embedder A (model "test-a", dimension 16) are refused by embedder B ("test-b",
dimension 32) until a re-index with B, after which B's vectors find the right chunks and text, metadata,
source positions and ACLs are unchanged. The CLI runs once as a real process on the embedded store.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from app.core.config import Settings
from app.core.errors import ConfigurationError
from app.ingest.reindex import reindex
from app.stores.vector.base import ChunkFilter, ChunkRecord, ChunkStore, IndexInfo, SourcePosition
from app.stores.vector.factory import build_chunk_store
from app.text.analysis import default_analyzer
from app.text.context import context_line, embedding_text

BIN = Path(sys.executable).parent / "knowledge-search"


class HashedBagOfWords:
    """A deterministic Embedder: the normalized sum of one fixed random vector per word (per model)."""

    def __init__(self, model_id: str, dimension: int) -> None:
        self.model_id = model_id
        self.dimension = dimension

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for word in set(re.findall(r"\w+", text.lower())):
            seed = zlib.crc32(f"{self.model_id}:{word}".encode())
            v += np.random.default_rng(seed).standard_normal(self.dimension, dtype=np.float32)
        return v / (np.linalg.norm(v) or 1.0)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


A = HashedBagOfWords("test-a", 16)
B = HashedBagOfWords("test-b", 32)
ANALYZER = default_analyzer()
DOCS = {
    "doc-hr": (
        "hr",
        {"dept": "hr", "year": 2024},
        ["alice"],
        ["Paid leave is twenty days a year.", "Parental leave lasts sixteen weeks."],
    ),
    "doc-it": (
        "it",
        {"dept": "it", "tags": ["security"]},
        None,
        ["Passwords rotate every ninety days.", "Laptops use disk encryption."],
    ),
    "doc-ja": ("ja", {"lang": "ja"}, None, ["有給休暇は年間二十日です。"]),
}


def records(embedder: HashedBagOfWords, only: str | None = None) -> list[ChunkRecord]:
    out = []
    for doc_id, (collection, metadata, acl, texts) in DOCS.items():
        if only is not None and doc_id != only:
            continue
        for i, text in enumerate(texts):
            out.append(
                ChunkRecord(
                    chunk_id=f"{doc_id}-{i:05d}",
                    document_id=doc_id,
                    collection=collection,
                    ordinal=i,
                    title=f"Title of {doc_id}",
                    text=text,
                    source=SourcePosition(
                        char_start=i * 100, char_end=i * 100 + len(text), page=i + 1, heading_path=["Policy", doc_id]
                    ),
                    metadata=metadata,
                    acl=acl,
                    tokens=" ".join(ANALYZER.tokens(text)),
                    vector=embedder.embed_query(text),
                )
            )
    return out


@pytest.fixture(params=["embedded", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    base = Settings(data_dir=tmp_path / "data", admin_key=None, ingest_workers=0, embed_batch_size=2)
    if request.param == "embedded":
        yield base
        return
    from opensearchpy import OpenSearch

    url = request.getfixturevalue("opensearch_url")
    alias = f"ks-test-reindex-{uuid.uuid4().hex[:10]}"
    yield base.model_copy(update={"vector_store": "opensearch", "opensearch_url": url, "opensearch_index": alias})
    admin = OpenSearch(hosts=[url], timeout=30)
    admin.indices.delete(index=f"{alias}*", ignore_unavailable=True)
    admin.close()


def open_store(settings: Settings, embedder: HashedBagOfWords) -> ChunkStore:
    store = build_chunk_store(settings)
    try:
        store.ensure_ready(IndexInfo(embedder.model_id, embedder.dimension))
    except BaseException:
        store.close()
        raise
    return store


def index_with_a(settings: Settings) -> None:
    store = open_store(settings, A)
    store.add(records(A))
    store.close()


def assert_refused(settings: Settings, embedder: HashedBagOfWords) -> None:
    with pytest.raises(ConfigurationError) as refused:
        open_store(settings, embedder)
    assert "reindex" in str(refused.value)


def test_reindex_switches_the_store_to_the_new_embedder(settings: Settings) -> None:
    index_with_a(settings)
    assert_refused(settings, B)

    seen: list[tuple[int, int, int]] = []
    report = reindex(settings, B, ANALYZER, progress=lambda *p: seen.append(p))
    assert report.old == IndexInfo("test-a", 16) and report.new == IndexInfo("test-b", 32)
    assert (report.documents, report.chunks) == (3, 5)
    assert seen[-1] == (3, 3, 5)

    store = open_store(settings, B)
    try:
        assert store.count() == 5
        everyone = ChunkFilter()
        for rec in records(B):
            # re-embedded as at ingest: the chunk's title and heading path above its text
            indexed = embedding_text(context_line(rec.title, rec.source.heading_path), rec.text)
            assert indexed.startswith(f"Title of {rec.document_id} > Policy > {rec.document_id}\n\n")
            hits = store.vector_search(B.embed_query(indexed), everyone, 3)
            assert hits[0].chunk.chunk_id == rec.chunk_id
            assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert [h.chunk.chunk_id for h in store.keyword_search(ANALYZER.tokens("encryption"), everyone, 5)] == [
            "doc-it-00001"
        ]
        assert [h.chunk.chunk_id for h in store.keyword_search(ANALYZER.tokens("有給休暇"), everyone, 5)] == [
            "doc-ja-00000"
        ]
        # ACL and metadata still filter inside both retrievals.
        bob, alice = ChunkFilter(principals=["bob"]), ChunkFilter(principals=["alice"])
        assert store.keyword_search(ANALYZER.tokens("leave"), bob, 5) == []
        assert len(store.keyword_search(ANALYZER.tokens("leave"), alice, 5)) == 2
        assert {h.chunk.document_id for h in store.vector_search(B.embed_query("leave"), bob, 10)} == {
            "doc-it",
            "doc-ja",
        }
        tagged = store.vector_search(B.embed_query("days"), ChunkFilter(metadata={"tags": "security"}), 10)
        assert {h.chunk.document_id for h in tagged} == {"doc-it"}
        by_year = store.keyword_search(ANALYZER.tokens("leave"), ChunkFilter(metadata={"year": 2024}), 10)
        assert len(by_year) == 2
        # Everything a chunk carries came through unchanged.
        expected = {r.chunk_id: r for r in records(B)}
        for doc_id in DOCS:
            for got in store.get_chunks(doc_id):
                want = expected[got.chunk_id]
                assert (got.document_id, got.collection, got.ordinal, got.title, got.text) == (
                    want.document_id,
                    want.collection,
                    want.ordinal,
                    want.title,
                    want.text,
                )
                assert got.source == want.source and got.metadata == want.metadata and got.acl == want.acl
    finally:
        store.close()
    assert_refused(settings, A)


def test_reindex_with_the_same_model_and_keep_old(settings: Settings) -> None:
    index_with_a(settings)
    first = reindex(settings, A, ANALYZER)
    second = reindex(settings, A, ANALYZER, keep_old=True)
    assert first.chunks == second.chunks == 5
    assert second.kept_old
    store = open_store(settings, A)
    try:
        assert store.count() == 5
        assert (
            store.vector_search(A.embed_query(DOCS["doc-it"][3][0]), ChunkFilter(), 1)[0].chunk.chunk_id
            == "doc-it-00000"
        )
    finally:
        store.close()
    if settings.vector_store == "embedded":
        assert Path(second.kept_old).exists() and not Path(second.target).exists()
    else:
        from app.stores.vector.opensearch import OpenSearchChunkStore

        os_store = OpenSearchChunkStore.from_settings(settings)
        try:
            # Each run builds beside the serving index (the name takes a suffix while the plain one is taken);
            # the first run deleted its predecessor, the second kept it.
            assert first.target != first.source and second.target != second.source == first.target
            assert os_store.indices() == [second.target]
            alias = settings.opensearch_index
            assert set(os_store._client.indices.get(index=f"{alias}-*")) == {second.target, second.kept_old}
        finally:
            os_store.close()


def test_reindex_of_nothing(settings: Settings) -> None:
    report = reindex(settings, B, ANALYZER)
    assert report.old is None and report.chunks == 0
    store = open_store(settings, B)
    store.close()


@pytest.mark.opensearch
@pytest.mark.parametrize("settings", ["opensearch"], indirect=True)  # embedded: re-indexed with the service stopped
def test_opensearch_reindex_catches_up_with_writes_during_the_copy(settings: Settings) -> None:
    store = open_store(settings, A)
    store.add([r for r in records(A) if r.document_id != "doc-ja"])
    writer = build_chunk_store(settings)  # another client, like a running service instance

    def write_once(done: int, total: int, chunks: int) -> None:
        if done == 1:
            writer.add(records(A, only="doc-ja"))
            writer.delete_document("doc-it")

    report = reindex(settings, B, ANALYZER, progress=write_once)
    writer.close()
    store.close()
    assert report.documents == 3  # doc-hr, doc-it, then doc-ja in the catch-up
    store = open_store(settings, B)
    try:
        assert store.document_ids() == {"doc-hr", "doc-ja"}
        assert store.count() == 3
    finally:
        store.close()


def test_embedded_reindex_refuses_while_another_process_has_the_file_open(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    index_with_a(settings)
    holder = build_chunk_store(settings)  # the running service
    try:
        with pytest.raises(ConfigurationError, match="stop the service"):
            reindex(settings, B, ANALYZER)
    finally:
        holder.close()
    assert not (settings.data_dir / "chunks.db.reindex").exists()
    assert_refused(settings, B)
    open_store(settings, A).close()


@pytest.mark.process
def test_cli_reindex_end_to_end(tmp_path: Path) -> None:
    """An index built by another model: `search` refuses and says to re-index; `reindex` fixes it."""
    data = tmp_path / "data"
    index_with_a(Settings(data_dir=data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KS_")}
    env.update(KS_DATA_DIR=str(data), KS_VECTOR_STORE="embedded", COLUMNS="200")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)

    refused = run("search", "encryption")
    assert refused.returncode == 2 and "knowledge-search reindex" in " ".join(refused.stderr.split())
    assert run("reindex", "--help").stdout.count("STOP THE SERVICE FIRST") == 1
    done = run("reindex")
    assert done.returncode == 0, done.stderr
    assert "re-indexed 3 documents, 5 chunks" in " ".join(done.stdout.split())
    found = run("search", "disk encryption", "--mode", "keyword")
    assert found.returncode == 0, found.stderr
    assert "Laptops use disk encryption." in found.stdout
