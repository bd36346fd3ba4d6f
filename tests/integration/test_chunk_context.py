"""The chunk context field (title and heading path) in both stores' BM25, and the embedded store's upgrade."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from app.stores.vector.base import ChunkFilter, ChunkStore
from app.stores.vector.embedded import EmbeddedChunkStore
from tests.integration.test_chunk_stores import INFO, chunk, ids, open_store, q, store  # noqa: F401 (fixtures)


def with_context(chunk_id: str, document_id: str, text: str, context: str):  # type: ignore[no-untyped-def]
    return replace(chunk(chunk_id, document_id=document_id, text=text), context=" ".join(q(context)))


def test_context_words_find_a_chunk_that_does_not_say_them(store: ChunkStore) -> None:  # noqa: F811
    store.add(
        [
            with_context("cc0", "cc0", "The Affirmer waives all rights to the work.", "CC0 1.0 Universal > Waiver"),
            # says "waiver" in its text but is another document
            with_context("mpl", "mpl", "A waiver of this term must be written.", "Mozilla Public License > Misc"),
        ]
    )
    assert ids(store.keyword_search(q("CC0 universal"), ChunkFilter(), 10)) == ["cc0"]
    assert set(ids(store.keyword_search(q("waiver"), ChunkFilter(), 10))) == {"cc0", "mpl"}
    assert store.get_chunks("cc0")[0].text == "The Affirmer waives all rights to the work."


def test_context_weight_zero_ignores_the_context(tmp_path: Path) -> None:
    weighted = EmbeddedChunkStore(tmp_path / "chunks.db", context_weight=3.0)
    weighted.ensure_ready(INFO)
    weighted.add(
        [
            with_context("in-text", "a", "Remote work needs approval from a manager.", "Handbook"),
            with_context("in-title", "b", "Ask your manager first.", "Remote work policy"),
        ]
    )
    assert ids(weighted.keyword_search(q("remote work"), ChunkFilter(), 10)) == ["in-title", "in-text"]
    weighted.close()
    plain = EmbeddedChunkStore(tmp_path / "chunks.db", context_weight=0.0)
    assert ids(plain.keyword_search(q("remote work"), ChunkFilter(), 10))[0] == "in-text"
    plain.close()


def test_an_index_from_before_chunk_context_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "chunks.db"
    old = EmbeddedChunkStore(path)
    old.ensure_ready(INFO)
    old.add([chunk("kept", text="Quarterly revenue grew.")])
    old.close()
    # make the file look as the previous version wrote it: a keyword table without the context column
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE VIRTUAL TABLE old_fts USING fts5(tokens, tokenize = 'unicode61 remove_diacritics 0');"
        "INSERT INTO old_fts (rowid, tokens) SELECT rowid, tokens FROM chunks_fts;"
        "DROP TABLE chunks_fts; ALTER TABLE old_fts RENAME TO chunks_fts;"
    )
    conn.close()

    upgraded = EmbeddedChunkStore(path)
    upgraded.ensure_ready(INFO)
    assert ids(upgraded.keyword_search(q("revenue"), ChunkFilter(), 10)) == ["kept"]
    upgraded.add([with_context("new", "d2", "Costs fell.", "Quarterly report")])
    assert set(ids(upgraded.keyword_search(q("quarterly"), ChunkFilter(), 10))) == {"kept", "new"}
    upgraded.close()
