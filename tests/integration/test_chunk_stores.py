"""The chunk store contract: every backend must pass the same assertions.

The embedded store runs on a temp SQLite file; the OpenSearch store on a fresh alias (and index) per test on
the server from KS_OPENSEARCH_URL, deleted afterwards.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.errors import BadInput, ConfigurationError, StoreUnavailable
from app.stores.vector.base import ChunkFilter, ChunkRecord, ChunkStore, IndexInfo, SourcePosition
from app.stores.vector.embedded import EmbeddedChunkStore
from app.text.analysis import default_analyzer

DIM = 8
INFO = IndexInfo(embedding_model="test-embedder", dimension=DIM)


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def random_vectors(n: int, seed: int = 7) -> np.ndarray:
    m = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def chunk(
    chunk_id: str,
    *,
    document_id: str = "doc-1",
    text: str = "common words",
    vector: np.ndarray | None = None,
    ordinal: int = 0,
    collection: str = "default",
    metadata: dict[str, Any] | None = None,
    acl: list[str] | None = None,
) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=chunk_id,
        document_id=document_id,
        collection=collection,
        ordinal=ordinal,
        title=f"Title of {document_id}",
        text=text,
        source=SourcePosition(char_start=ordinal * 10, char_end=ordinal * 10 + len(text), page=1, heading_path=["H"]),
        metadata=metadata or {},
        acl=acl,
        tokens=" ".join(default_analyzer().tokens(text)),
        vector=unit(vector) if vector is not None else random_vectors(1, seed=zlib.crc32(chunk_id.encode()))[0],
    )


def q(text: str) -> list[str]:
    return default_analyzer().tokens(text)


def ids(hits: list[Any]) -> list[str]:
    return [h.chunk.chunk_id for h in hits]


def visible(store: ChunkStore, flt: ChunkFilter, query_vector: np.ndarray | None = None) -> set[str]:
    """Chunk ids a filter lets through, asked of vector and keyword search alike (both must agree)."""
    vec = query_vector if query_vector is not None else unit(np.ones(DIM))
    by_vector = set(ids(store.vector_search(vec, flt, 100)))
    by_keyword = set(ids(store.keyword_search(q("common words"), flt, 100)))
    assert by_vector == by_keyword
    return by_vector


# --- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(params=["embedded", pytest.param("opensearch", marks=pytest.mark.opensearch)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], ChunkStore]]:
    """Opens (another) store on the same underlying index: a file, or an OpenSearch alias."""
    opened: list[ChunkStore] = []
    if request.param == "embedded":

        def make() -> ChunkStore:
            opened.append(EmbeddedChunkStore(tmp_path / "chunks.db"))
            return opened[-1]

        yield make
        for s in opened:
            s.close()
        return

    from opensearchpy import OpenSearch

    from app.stores.vector.opensearch import OpenSearchChunkStore

    url = request.getfixturevalue("opensearch_url")
    alias = f"ks-test-chunks-{uuid.uuid4().hex[:10]}"

    def make_os() -> ChunkStore:
        opened.append(OpenSearchChunkStore(OpenSearch(hosts=[url], timeout=30), alias))
        return opened[-1]

    yield make_os
    for s in opened:
        s.close()
    admin = OpenSearch(hosts=[url], timeout=30)
    admin.indices.delete(index=f"{alias}*", ignore_unavailable=True)
    admin.close()


@pytest.fixture
def store(open_store: Callable[[], ChunkStore]) -> ChunkStore:
    s = open_store()
    s.ensure_ready(INFO)
    return s


# --- lifecycle -----------------------------------------------------------------------------------------
def test_ensure_ready_is_idempotent_and_refuses_another_embedder(open_store: Callable[[], ChunkStore]) -> None:
    first = open_store()
    first.ensure_ready(INFO)
    first.ensure_ready(INFO)
    first.add([chunk("c1")])
    again = open_store()
    again.ensure_ready(INFO)
    assert again.count() == 1

    with pytest.raises(ConfigurationError) as other_model:
        open_store().ensure_ready(IndexInfo("another-embedder", DIM))
    assert "reindex" in str(other_model.value)
    assert "test-embedder" in str(other_model.value) and "another-embedder" in str(other_model.value)

    with pytest.raises(ConfigurationError) as other_dim:
        open_store().ensure_ready(IndexInfo("test-embedder", DIM * 2))
    assert "reindex" in str(other_dim.value)


def test_ping(store: ChunkStore) -> None:
    store.ping()


# --- writes and counts ---------------------------------------------------------------------------------
def test_add_then_count_and_round_trip(store: ChunkStore) -> None:
    assert store.count() == 0
    store.add([])
    meta = {"dept": "人事", "year": 2024, "tags": ["a", "b"], "draft": False}
    store.add(
        [
            chunk("a0", document_id="A", ordinal=0, text="first", metadata=meta, acl=["group:hr"]),
            chunk("a1", document_id="A", ordinal=1, text="second"),
            chunk("b0", document_id="B", ordinal=0, text="third"),
        ]
    )
    assert store.count() == 3
    assert store.count("A") == 2
    assert store.count("B") == 1
    assert store.count("missing") == 0

    got = store.get_chunks("A")
    assert [c.chunk_id for c in got] == ["a0", "a1"]
    first = got[0]
    assert (first.document_id, first.collection, first.ordinal) == ("A", "default", 0)
    assert (first.title, first.text) == ("Title of A", "first")
    assert first.source == SourcePosition(char_start=0, char_end=5, page=1, heading_path=["H"])
    assert first.metadata == meta
    assert first.acl == ["group:hr"]
    assert first.vector is None
    assert got[1].acl is None and got[1].metadata == {}


def test_add_is_idempotent_by_chunk_id(store: ChunkStore) -> None:
    store.add([chunk(f"c{i}", ordinal=i, text="old wording about bicycles") for i in range(3)])
    store.add([chunk(f"c{i}", ordinal=i, text="new wording about umbrellas") for i in range(3)])
    assert store.count() == 3
    assert {c.text for c in store.get_chunks("doc-1")} == {"new wording about umbrellas"}
    assert len(store.keyword_search(q("umbrellas"), ChunkFilter(), 10)) == 3
    assert store.keyword_search(q("bicycles"), ChunkFilter(), 10) == []


def test_add_refuses_a_chunk_without_vector(store: ChunkStore) -> None:
    bad = chunk("c1")
    bad.vector = None
    with pytest.raises(ValueError):
        store.add([bad])


# --- keyword search ------------------------------------------------------------------------------------
def test_keyword_search_english_and_japanese(store: ChunkStore) -> None:
    store.add(
        [
            chunk("leave", document_id="ja", text="有給休暇は年間20日付与されます。"),
            chunk("rooms", document_id="ja2", text="会議室の予約はポータルから行います。"),
            chunk("expenses", document_id="en", text="The expense policy covers travel and meals."),
            chunk("parking", document_id="en2", text="Parking spaces are assigned by the facilities team."),
        ]
    )
    ja = store.keyword_search(q("有給休暇は何日"), ChunkFilter(), 10)
    assert ids(ja)[0] == "leave"
    assert "rooms" not in ids(ja) and "parking" not in ids(ja)

    en = store.keyword_search(q("expenses for travel"), ChunkFilter(), 10)
    assert ids(en) == ["expenses"]
    assert en[0].score > 0

    # More matching words rank higher; scores are descending.
    store.add([chunk("partial", document_id="en3", text="Travel needs approval.")])
    ranked = store.keyword_search(q("expenses for travel"), ChunkFilter(), 10)
    assert ids(ranked) == ["expenses", "partial"]
    assert ranked[0].score > ranked[1].score
    assert store.keyword_search([], ChunkFilter(), 10) == []
    # Only chunks with a query word match, with or without a filter.
    assert store.keyword_search(q("bicycles"), ChunkFilter(), 10) == []
    assert store.keyword_search(q("bicycles"), ChunkFilter(collection="default", principals=[]), 10) == []
    assert set(ids(store.keyword_search(q("travel"), ChunkFilter(collection="default"), 10))) == {
        "expenses",
        "partial",
    }


# --- vector search -------------------------------------------------------------------------------------
def test_vector_search_nearest_first_with_cosine_scores(store: ChunkStore) -> None:
    vectors = random_vectors(40)
    store.add(
        [
            chunk(f"v{i}", document_id=f"d{i}", vector=v, collection=("even", "odd")[i % 2])
            for i, v in enumerate(vectors)
        ]
    )
    query = random_vectors(1, seed=99)[0]
    cosines = vectors @ query
    expected = np.argsort(-cosines)[:10]

    hits = store.vector_search(query, ChunkFilter(), 10)
    assert ids(hits) == [f"v{i}" for i in expected]
    np.testing.assert_allclose([h.score for h in hits], cosines[expected], atol=1e-3)
    # Same scores when a filter applies (OpenSearch may then search exactly instead of through the graph).
    odd = [i for i in np.argsort(-cosines) if i % 2][:5]
    hits = store.vector_search(query, ChunkFilter(collection="odd"), 5)
    assert ids(hits) == [f"v{i}" for i in odd]
    np.testing.assert_allclose([h.score for h in hits], cosines[odd], atol=1e-3)
    # An exact match scores 1; the opposite direction scores -1.
    assert store.vector_search(vectors[3], ChunkFilter(), 1)[0].score == pytest.approx(1.0, abs=1e-3)
    far = store.vector_search(-vectors[3], ChunkFilter(), 40)
    assert far[-1].chunk.chunk_id == "v3" and far[-1].score == pytest.approx(-1.0, abs=1e-3)


def test_limit_counts_only_visible_chunks(store: ChunkStore) -> None:
    """30 restricted chunks lie closer to the query than 5 visible ones: the filter must be inside the query."""
    query = unit(np.arange(1, DIM + 1))
    rng = np.random.default_rng(3)
    close = [unit(query + rng.normal(scale=0.05, size=DIM)) for _ in range(30)]
    far = [unit(query + rng.normal(scale=1.0, size=DIM)) for _ in range(5)]
    store.add(
        [chunk(f"secret{i}", text="salary bands", vector=v, acl=["group:hr"]) for i, v in enumerate(close)]
        + [chunk(f"open{i}", text="salary bands overview", vector=v) for i, v in enumerate(far)]
    )
    user = ChunkFilter(principals=["user:alice"])
    expected = {f"open{i}" for i in range(5)}
    assert set(ids(store.vector_search(query, user, 5))) == expected
    assert set(ids(store.keyword_search(q("salary"), user, 5))) == expected
    assert all(i.startswith("secret") for i in ids(store.vector_search(query, ChunkFilter(), 5)))


# --- filters -------------------------------------------------------------------------------------------
def test_filter_collection_and_document_ids(store: ChunkStore) -> None:
    store.add(
        [
            chunk("a", document_id="A", collection="hr"),
            chunk("b", document_id="B", collection="hr"),
            chunk("c", document_id="C", collection="eng"),
        ]
    )
    assert visible(store, ChunkFilter()) == {"a", "b", "c"}
    assert visible(store, ChunkFilter(collection="hr")) == {"a", "b"}
    assert visible(store, ChunkFilter(collection="none")) == set()
    assert visible(store, ChunkFilter(document_ids=["A", "C"])) == {"a", "c"}
    assert visible(store, ChunkFilter(collection="hr", document_ids=["A", "C"])) == {"a"}
    assert visible(store, ChunkFilter(document_ids=[])) == set()
    assert [c.chunk_id for c in store.get_chunks("A", ChunkFilter(collection="eng"))] == []


def test_filter_metadata_typed_values(store: ChunkStore) -> None:
    store.add(
        [
            chunk("A", metadata={"dept": "hr", "year": 2024, "draft": True, "tags": ["a", "b"], "code": "1"}),
            chunk("B", metadata={"dept": "eng", "year": "2024", "draft": False, "tags": ["c"], "code": 1}),
            chunk("C", metadata={"dept": "人事", "year": 2023, "draft": "true", "code": True}),
        ]
    )

    def meta(**m: Any) -> set[str]:
        return visible(store, ChunkFilter(metadata=m))

    assert meta(dept="hr") == {"A"}
    assert meta(dept="人事") == {"C"}
    assert meta(dept=["eng", "sales"]) == {"B"}
    # Strings, numbers and booleans are distinct values.
    assert meta(year=2024) == {"A"}
    assert meta(year="2024") == {"B"}
    assert meta(year=[2023, "2024"]) == {"B", "C"}
    assert meta(draft=True) == {"A"}
    assert meta(draft=False) == {"B"}
    assert meta(draft="true") == {"C"}
    assert meta(code=1) == {"B"}
    assert meta(code="1") == {"A"}
    assert meta(code=True) == {"C"}
    # A list-valued field matches any of its elements.
    assert meta(tags="b") == {"A"}
    assert meta(tags=["c", "z"]) == {"B"}
    assert meta(tags="z") == set()
    assert meta(missing="x") == set()
    assert meta(dept=[]) == set()
    assert meta(dept="hr", year=2024) == {"A"}
    assert meta(dept="hr", year=2023) == set()
    with pytest.raises(BadInput):
        meta(**{"bad key!": "x"})


def test_filter_principals(store: ChunkStore) -> None:
    store.add(
        [
            chunk("public"),
            chunk("hr", acl=["group:hr"]),
            chunk("hr_or_bob", acl=["group:hr", "user:bob"]),
        ]
    )

    def seen(principals: list[str] | None) -> set[str]:
        return visible(store, ChunkFilter(principals=principals))

    assert seen(None) == {"public", "hr", "hr_or_bob"}
    assert seen([]) == {"public"}
    assert seen(["group:hr"]) == {"public", "hr", "hr_or_bob"}
    assert seen(["user:bob"]) == {"public", "hr_or_bob"}
    assert seen(["user:eve", "group:eng"]) == {"public"}
    assert [c.chunk_id for c in store.get_chunks("doc-1", ChunkFilter(principals=["user:bob"]))] in (
        ["public", "hr_or_bob"],
        ["hr_or_bob", "public"],
    )


def test_empty_acl_is_public(store: ChunkStore) -> None:
    """base.py: a chunk is visible when its acl is empty/None."""
    store.add([chunk("empty", acl=[])])
    assert visible(store, ChunkFilter(principals=["user:alice"])) == {"empty"}


# --- delete and listing --------------------------------------------------------------------------------
def test_delete_document(store: ChunkStore) -> None:
    vectors = random_vectors(5)
    store.add([chunk(f"a{i}", document_id="A", ordinal=i, vector=vectors[i]) for i in range(3)])
    store.add([chunk(f"b{i}", document_id="B", ordinal=i, vector=vectors[3 + i]) for i in range(2)])
    assert store.delete_document("A") == 3
    assert store.delete_document("A") == 0
    assert store.delete_document("missing") == 0
    assert store.count() == 2 and store.count("A") == 0
    assert store.get_chunks("A") == []
    assert store.document_ids() == {"B"}
    assert set(ids(store.keyword_search(q("common words"), ChunkFilter(), 10))) == {"b0", "b1"}
    assert set(ids(store.vector_search(vectors[0], ChunkFilter(), 10))) == {"b0", "b1"}


def test_get_chunks_in_order_across_pages(store: ChunkStore) -> None:
    n = 1_234
    order = np.random.default_rng(5).permutation(n)
    store.add([chunk(f"c{i:05d}", ordinal=int(i), text="x", vector=np.ones(DIM)) for i in order])
    store.add([chunk("other", document_id="doc-2")])
    got = store.get_chunks("doc-1")
    assert [c.ordinal for c in got] == list(range(n))
    assert len({c.chunk_id for c in got}) == n


def test_document_ids_across_pages(store: ChunkStore) -> None:
    assert store.document_ids() == set()
    store.add([chunk(f"c{i}", document_id=f"doc-{i:04d}", vector=np.ones(DIM)) for i in range(1_050)])
    store.add([chunk("extra", document_id="doc-0000", ordinal=1)])
    assert store.document_ids() == {f"doc-{i:04d}" for i in range(1_050)}


# --- OpenSearch specifics ------------------------------------------------------------------------------
@pytest.mark.opensearch
def test_opensearch_alias_layout_and_failures(opensearch_url: str) -> None:
    from opensearchpy import OpenSearch

    from app.stores.vector.opensearch import OpenSearchChunkStore, index_name

    client = OpenSearch(hosts=[opensearch_url], timeout=30)
    alias = f"ks-test-chunks-{uuid.uuid4().hex[:10]}"
    store = OpenSearchChunkStore(client, alias)
    try:
        store.ensure_ready(INFO)
        concrete = index_name(alias, INFO)
        assert concrete == f"{alias}-test-embedder-{DIM}-v1"
        assert list(client.indices.get_alias(name=alias)) == [concrete]
        mapping = client.indices.get_mapping(index=concrete)[concrete]["mappings"]
        assert mapping["dynamic"] == "strict"
        assert mapping["_meta"]["embedding_model"] == "test-embedder"
        assert mapping["properties"]["vector"]["method"]["engine"] == "lucene"

        # Per-item failures are reported, never dropped: a wrong-dimension vector fails its item only.
        wrong = chunk("wrong")
        wrong.vector = unit(np.ones(DIM * 2))
        with pytest.raises(StoreUnavailable, match="1 of 2.*dimension"):
            store.add([chunk("right"), wrong])
        assert store.count() == 1

        # An index left without its alias (say, by an interrupted re-index) is adopted, not recreated.
        client.indices.delete_alias(index=concrete, name=alias)
        OpenSearchChunkStore(client, alias).ensure_ready(INFO)
        assert list(client.indices.get_alias(name=alias)) == [concrete]
        assert store.count() == 1
    finally:
        client.indices.delete(index=f"{alias}*", ignore_unavailable=True)
        store.close()

    dead = OpenSearchChunkStore(OpenSearch(hosts=["http://127.0.0.1:9"], timeout=2, max_retries=0), alias)
    with pytest.raises(StoreUnavailable):
        dead.ping()
    with pytest.raises(StoreUnavailable):
        dead.count()
    dead.close()


# --- access scope and updates --------------------------------------------------------------------------
def test_allowed_collections_filter(store: ChunkStore) -> None:
    store.add([chunk("a", collection="hr"), chunk("b", collection="eng"), chunk("c", collection="sales")])
    assert visible(store, ChunkFilter(collections=["hr", "eng"])) == {"a", "b"}
    assert visible(store, ChunkFilter(collections=[])) == set()
    assert visible(store, ChunkFilter(collection="sales", collections=["hr"])) == set()


def test_update_document_changes_acl_metadata_and_title_everywhere(store: ChunkStore) -> None:
    store.add([chunk(f"d{i}", document_id="D", ordinal=i, acl=["group:hr"]) for i in range(3)])
    store.add([chunk("other", document_id="O")])
    assert visible(store, ChunkFilter(principals=["user:bob"])) == {"other"}
    assert store.update_document("D", acl=["user:bob"], metadata={"level": 2}, title="Renamed") == 3
    assert visible(store, ChunkFilter(principals=["user:bob"])) == {"d0", "d1", "d2", "other"}
    assert visible(store, ChunkFilter(principals=["group:hr"])) == {"other"}
    assert visible(store, ChunkFilter(metadata={"level": 2})) == {"d0", "d1", "d2"}
    assert {c.title for c in store.get_chunks("D")} == {"Renamed"}
    store.update_document("D", acl=None)
    assert visible(store, ChunkFilter(principals=[])) == {"d0", "d1", "d2", "other"}
    # untouched fields stay as they were
    assert {c.title for c in store.get_chunks("D")} == {"Renamed"}


# --- staged versions -----------------------------------------------------------------------------------
def test_staged_chunks_are_invisible_until_published(store: ChunkStore) -> None:
    vectors = random_vectors(4)
    store.add([chunk(f"v1-{i}", document_id="D", ordinal=i, text="old alpha", vector=vectors[i]) for i in range(2)])
    store.add(
        [chunk(f"v2-{i}", document_id="D", ordinal=i, text="new omega", vector=vectors[2 + i]) for i in range(2)],
        live=False,
    )
    everyone = ChunkFilter()
    assert set(ids(store.keyword_search(q("alpha"), everyone, 10))) == {"v1-0", "v1-1"}
    assert ids(store.keyword_search(q("omega"), everyone, 10)) == []
    assert {h.chunk.chunk_id for h in store.vector_search(vectors[2], everyone, 10)} == {"v1-0", "v1-1"}
    assert [c.chunk_id for c in store.get_chunks("D")] == ["v1-0", "v1-1"]
    assert store.count("D") == 2

    store.publish("D", ["v2-0", "v2-1"])
    assert [c.chunk_id for c in store.get_chunks("D")] == ["v2-0", "v2-1"]
    assert set(ids(store.keyword_search(q("omega"), everyone, 10))) == {"v2-0", "v2-1"}
    assert ids(store.keyword_search(q("alpha"), everyone, 10)) == []
    assert store.vector_search(vectors[2], everyone, 1)[0].chunk.chunk_id == "v2-0"
    assert store.count("D") == 2


def test_unpublished_staged_chunks_can_be_dropped(store: ChunkStore) -> None:
    store.add([chunk("live-1", document_id="D")])
    store.add([chunk("staged-1", document_id="D"), chunk("staged-2", document_id="E")], live=False)
    assert store.delete_staged("D") == 1
    assert store.delete_staged() == 1
    store.publish("D", ["live-1"])  # nothing staged: publishing what is live keeps it
    assert [c.chunk_id for c in store.get_chunks("D")] == ["live-1"]


# --- concurrency -----------------------------------------------------------------------------------------
def test_searches_beside_writes_see_whole_versions_with_true_scores(store: ChunkStore) -> None:
    """Searches from several threads while documents are replaced and added: each hit is a chunk that exists,
    scored against its own vector (a matrix paired with another version's row ids would score a hit against a
    neighbour's vector), and a document is never missing. The embedded store sees each version whole (one SQLite
    transaction); OpenSearch may show both versions for a moment (see its publish)."""
    import threading

    whole = isinstance(store, EmbeddedChunkStore)

    vectors = random_vectors(64, seed=3)
    vector_of = {f"D-v{g}-{i}": vectors[(g * 4 + i) % 64] for g in range(40) for i in range(4)}
    store.add([chunk(f"D-v0-{i}", document_id="D", ordinal=i, vector=vector_of[f"D-v0-{i}"]) for i in range(4)])
    stop = threading.Event()
    problems: list[str] = []

    def search(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            query = unit(rng.normal(size=DIM))
            try:
                hits = store.vector_search(query, ChunkFilter(document_ids=["D"]), 10)
                versions = {h.chunk.chunk_id.rsplit("-", 1)[0] for h in hits}
                if len(hits) < 4 or (whole and (len(versions) > 1 or len(hits) != 4)):
                    problems.append(f"document D seen as {sorted(ids(hits))}")
                for h in hits:
                    if abs(h.score - float(vector_of[h.chunk.chunk_id] @ query)) > 1e-3:
                        problems.append(f"{h.chunk.chunk_id} scored {h.score}")
                keyword = store.keyword_search(q("common words"), ChunkFilter(document_ids=["D"]), 10)
                if len(keyword) < 4 or (whole and len({h.chunk.chunk_id.rsplit("-", 1)[0] for h in keyword}) > 1):
                    problems.append(f"keyword search saw {sorted(ids(keyword))}")
            except Exception as exc:  # noqa: BLE001 - any failure of a reader is the finding
                problems.append(repr(exc))

    readers = [threading.Thread(target=search, args=(n,)) for n in range(4)]
    for t in readers:
        t.start()
    try:
        for g in range(1, 40):
            staged = [
                chunk(f"D-v{g}-{i}", document_id="D", ordinal=i, vector=vector_of[f"D-v{g}-{i}"]) for i in range(4)
            ]
            store.add(staged, live=False)
            store.publish("D", [c.chunk_id for c in staged])
            store.add([chunk(f"other-{g}", document_id=f"E{g}")])
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert problems == []
    assert store.count("D") == 4 and store.count() == 4 + 39
