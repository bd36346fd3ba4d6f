"""Embedded chunk store: one SQLite file in KS_DATA_DIR with FTS5 for BM25, vectors as float32 blobs,
and an in-memory numpy matrix for exact cosine search.

Filters (collection, metadata, document ids, principals) are SQL predicates: keyword search applies them in
the FTS query, vector search scores only the rows that pass them. Other processes writing the same file
(the CLI while the service runs) are noticed through a generation counter and the matrix is reloaded.

Writes go through one connection, one at a time. Searches and other reads take a connection of their own from a
small pool (SQLite's WAL lets readers work beside each other and beside a writer, each seeing the last commit), so
concurrent searches use every core instead of queueing behind one lock; the vector matrix is scored outside any
lock, from a snapshot of it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from app.core.errors import BadInput, ConfigurationError, StoreUnavailable
from app.stores.vector.base import UNSET, ChunkFilter, ChunkRecord, Hit, IndexInfo, SourcePosition, Unset

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
  rowid INTEGER PRIMARY KEY,
  chunk_id TEXT NOT NULL UNIQUE,
  document_id TEXT NOT NULL,
  collection TEXT NOT NULL,
  ordinal INTEGER NOT NULL,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  source TEXT NOT NULL,
  metadata TEXT NOT NULL,
  acl TEXT,
  vector BLOB NOT NULL,
  live INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS ix_chunks_document ON chunks(document_id, ordinal);
CREATE INDEX IF NOT EXISTS ix_chunks_collection ON chunks(collection);
CREATE INDEX IF NOT EXISTS ix_chunks_staged ON chunks(live) WHERE live = 0;
CREATE TABLE IF NOT EXISTS chunk_acl (
  rowid INTEGER NOT NULL REFERENCES chunks(rowid) ON DELETE CASCADE,
  principal TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_chunk_acl ON chunk_acl(principal, rowid);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(tokens, context, tokenize = 'unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS store_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  generation INTEGER NOT NULL,
  delete_generation INTEGER NOT NULL,
  embedding_model TEXT,
  dimension INTEGER
);
INSERT OR IGNORE INTO store_state (id, generation, delete_generation) VALUES (1, 0, 0);
"""

METADATA_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
# The weight of a chunk's context (title and headings) against its text in BM25 (KS_KEYWORD_CONTEXT_WEIGHT).
CONTEXT_WEIGHT = 1.0
# Read connections kept open: enough for every core to run a query, few enough that their page caches stay small.
READERS = 4


class EmbeddedChunkStore:
    def __init__(self, path: Path, *, context_weight: float = CONTEXT_WEIGHT) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(chunks)")}
        if "live" not in columns:  # a store written before staged updates existed
            self._conn.execute("ALTER TABLE chunks ADD COLUMN live INTEGER NOT NULL DEFAULT 1")
        self._add_context_column()
        self._context_weight = float(context_weight)
        # One BLAS thread: a matrix-vector product is memory-bound, and BLAS threads spinning beside the
        # embedder's OpenMP threads made a 10k-chunk hybrid search 40x slower on 2 cores (bench/ingest_search).
        threadpool_limits(limits=1, user_api="blas")
        self._dim = 0
        # (matrix, rowids, (generation, delete_generation)): replaced whole by a sync, never changed in place, so
        # a search scores one consistent snapshot without a lock
        self._vectors: tuple[np.ndarray, np.ndarray, tuple[int, int]] = (
            np.zeros((0, 0), dtype=np.float32),
            np.zeros(0, dtype=np.int64),
            (-1, -1),
        )
        self._matrix_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []  # idle read connections
        self._reader_count = 0
        self._readers_free = threading.Condition()
        self._closed = False

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read connection of the pool for the duration of the block (waits while all are in use)."""
        with self._readers_free:
            while not self._readers and self._reader_count >= READERS:
                self._readers_free.wait()
            if self._closed:
                raise StoreUnavailable("embedded chunk store is closed")
            if self._readers:
                conn = self._readers.pop()
            else:
                conn = sqlite3.connect(self._path, check_same_thread=False, timeout=30, isolation_level=None)
                conn.execute("PRAGMA query_only=1")
                self._reader_count += 1
        try:
            yield conn
        finally:
            with self._readers_free:
                if self._closed:
                    conn.close()
                else:
                    self._readers.append(conn)
                self._readers_free.notify()

    def _add_context_column(self) -> None:
        """A store written before chunks had a context field gets an empty one (FTS5 tables cannot ALTER, so
        the keyword index is copied into a new table once); `knowledge-search reindex` fills it."""
        columns = [d[0] for d in self._conn.execute("SELECT * FROM chunks_fts LIMIT 0").description]
        if "context" in columns:
            return
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(
                "CREATE VIRTUAL TABLE chunks_fts_v2 USING fts5(tokens, context,"
                " tokenize = 'unicode61 remove_diacritics 0')"
            )
            cur.execute("INSERT INTO chunks_fts_v2 (rowid, tokens, context) SELECT rowid, tokens, '' FROM chunks_fts")
            cur.execute("DROP TABLE chunks_fts")
            cur.execute("ALTER TABLE chunks_fts_v2 RENAME TO chunks_fts")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    # --- lifecycle -------------------------------------------------------------------------------
    def ensure_ready(self, info: IndexInfo) -> None:
        with self._lock:
            model, dim = self._conn.execute(
                "SELECT embedding_model, dimension FROM store_state WHERE id = 1"
            ).fetchone()
            if model is None:
                self._conn.execute(
                    "UPDATE store_state SET embedding_model = ?, dimension = ? WHERE id = 1",
                    (info.embedding_model, info.dimension),
                )
            elif model != info.embedding_model or dim != info.dimension:
                raise ConfigurationError(
                    f"The chunk index in {self._path} was built with embedding model {model!r} "
                    f"(dimension {dim}), but the service is configured for {info.embedding_model!r} "
                    f"(dimension {info.dimension}). Vectors from different models cannot be mixed: "
                    "set KS_EMBEDDING_MODEL back, or rebuild the index with `knowledge-search reindex`."
                )
            self._dim = info.dimension

    def index_info(self) -> IndexInfo | None:
        """What built the index, without the model check (re-index reads through a store opened this way)."""
        with self._lock:
            model, dim = self._conn.execute(
                "SELECT embedding_model, dimension FROM store_state WHERE id = 1"
            ).fetchone()
        return None if model is None else IndexInfo(embedding_model=model, dimension=int(dim))

    def ping(self) -> str | None:
        try:
            with self._lock:
                self._conn.execute("SELECT 1 FROM store_state").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"embedded chunk store is not readable: {exc}") from exc
        return None

    def close(self) -> None:
        with self._readers_free:
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._readers_free.notify_all()
        with self._lock:
            self._conn.close()

    # --- writes ----------------------------------------------------------------------------------
    def add(self, chunks: Sequence[ChunkRecord], *, live: bool = True) -> None:
        if not chunks:
            return
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                replaced = self._delete_where(
                    cur, "chunk_id IN (%s)" % ",".join("?" * len(chunks)), [c.chunk_id for c in chunks]
                )
                for c in chunks:
                    if c.vector is None:
                        raise ValueError(f"chunk {c.chunk_id} has no vector")
                    cur.execute(
                        "INSERT INTO chunks (chunk_id, document_id, collection, ordinal, title, text, source,"
                        " metadata, acl, vector, live) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            c.chunk_id,
                            c.document_id,
                            c.collection,
                            c.ordinal,
                            c.title,
                            c.text,
                            json.dumps(c.source.as_dict(), ensure_ascii=False),
                            json.dumps(c.metadata, ensure_ascii=False),
                            json.dumps(c.acl) if c.acl else None,
                            np.asarray(c.vector, dtype=np.float32).tobytes(),
                            int(live),
                        ),
                    )
                    rowid = cur.lastrowid
                    cur.execute(
                        "INSERT INTO chunks_fts (rowid, tokens, context) VALUES (?, ?, ?)",
                        (rowid, c.tokens, c.context),
                    )
                    if c.acl:
                        cur.executemany(
                            "INSERT INTO chunk_acl (rowid, principal) VALUES (?, ?)", [(rowid, p) for p in c.acl]
                        )
                if live or replaced:  # staged rows are not in the vector matrix until they are published
                    column = "delete_generation" if replaced else "generation"
                    cur.execute(f"UPDATE store_state SET {column} = {column} + 1 WHERE id = 1")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def delete_document(self, document_id: str) -> int:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                n = self._delete_where(cur, "document_id = ?", [document_id])
                if n:
                    cur.execute("UPDATE store_state SET delete_generation = delete_generation + 1 WHERE id = 1")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return n

    @staticmethod
    def _delete_where(cur: sqlite3.Cursor, where: str, params: list[Any]) -> int:
        rowids = [r[0] for r in cur.execute(f"SELECT rowid FROM chunks WHERE {where}", params)]
        if not rowids:
            return 0
        for i in range(0, len(rowids), 500):
            part = rowids[i : i + 500]
            marks = ",".join("?" * len(part))
            cur.execute(f"DELETE FROM chunks_fts WHERE rowid IN ({marks})", part)
            cur.execute(f"DELETE FROM chunk_acl WHERE rowid IN ({marks})", part)
            cur.execute(f"DELETE FROM chunks WHERE rowid IN ({marks})", part)
        return len(rowids)

    def update_document(
        self,
        document_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        acl: list[str] | None | Unset = UNSET,
    ) -> int:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                rowids = [r[0] for r in cur.execute("SELECT rowid FROM chunks WHERE document_id = ?", (document_id,))]
                if title is not None:
                    cur.execute("UPDATE chunks SET title = ? WHERE document_id = ?", (title, document_id))
                if metadata is not None:
                    cur.execute(
                        "UPDATE chunks SET metadata = ? WHERE document_id = ?",
                        (json.dumps(metadata, ensure_ascii=False), document_id),
                    )
                if not isinstance(acl, Unset):
                    cur.execute(
                        "UPDATE chunks SET acl = ? WHERE document_id = ?",
                        (json.dumps(acl) if acl else None, document_id),
                    )
                    for i in range(0, len(rowids), 500):
                        part = rowids[i : i + 500]
                        cur.execute(f"DELETE FROM chunk_acl WHERE rowid IN ({','.join('?' * len(part))})", part)
                    if acl:
                        cur.executemany(
                            "INSERT INTO chunk_acl (rowid, principal) VALUES (?, ?)",
                            [(r, p) for r in rowids for p in acl],
                        )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return len(rowids)

    def publish(self, document_id: str, chunk_ids: Sequence[str]) -> None:
        """Make the staged chunks live and drop the document's others, in one transaction."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("CREATE TEMP TABLE IF NOT EXISTS keep_ids (chunk_id TEXT PRIMARY KEY)")
                cur.execute("DELETE FROM keep_ids")
                cur.executemany("INSERT OR IGNORE INTO keep_ids VALUES (?)", [(c,) for c in chunk_ids])
                self._delete_where(
                    cur, "document_id = ? AND chunk_id NOT IN (SELECT chunk_id FROM keep_ids)", [document_id]
                )
                cur.execute(
                    "UPDATE chunks SET live = 1 WHERE document_id = ? AND chunk_id IN (SELECT chunk_id FROM keep_ids)",
                    (document_id,),
                )
                cur.execute("UPDATE store_state SET delete_generation = delete_generation + 1 WHERE id = 1")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def delete_staged(self, document_id: str | None = None) -> int:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if document_id is None:
                    n = self._delete_where(cur, "live = 0", [])
                else:
                    n = self._delete_where(cur, "live = 0 AND document_id = ?", [document_id])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return n

    # --- reads -----------------------------------------------------------------------------------
    def count(self, document_id: str | None = None) -> int:
        with self._reading() as conn:
            if document_id is None:
                return conn.execute("SELECT count(*) FROM chunks WHERE live = 1").fetchone()[0]
            return conn.execute(
                "SELECT count(*) FROM chunks WHERE document_id = ? AND live = 1", (document_id,)
            ).fetchone()[0]

    def document_ids(self) -> set[str]:
        return set(self.chunk_counts())

    def chunk_counts(self) -> dict[str, int]:
        with self._reading() as conn:
            return dict(conn.execute("SELECT document_id, count(*) FROM chunks GROUP BY document_id"))

    def get_chunks(self, document_id: str, flt: ChunkFilter | None = None) -> list[ChunkRecord]:
        where, params = _filter_sql(flt or ChunkFilter(), alias="c")
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM chunks c WHERE c.document_id = ? AND c.live = 1 AND {where} ORDER BY c.ordinal",
                [document_id, *params],
            ).fetchall()
        return [_record(r) for r in rows]

    def keyword_search(self, tokens: list[str], flt: ChunkFilter, limit: int) -> list[Hit]:
        if not tokens:
            return []
        match = " OR ".join('"%s"' % t.replace('"', '""') for t in dict.fromkeys(tokens))
        where, params = _filter_sql(flt, alias="c")
        # Rank (rowid, score) pairs first and read the columns of the top `limit` only: every match is scored,
        # so carrying each one's row through the sort made a 100k-chunk search 2-3x slower (bench/scale).
        if where == "1=1":
            # No filter but `live`: staged rows are few, so exclude them by the partial index instead of
            # joining every match with its chunk row.
            ranked = (
                "SELECT chunks_fts.rowid AS rid, bm25(chunks_fts, 1.0, ?) AS s FROM chunks_fts WHERE chunks_fts MATCH ?"
                " AND chunks_fts.rowid NOT IN (SELECT rowid FROM chunks WHERE live = 0) ORDER BY s LIMIT ?"
            )
        else:
            ranked = (
                "SELECT c.rowid AS rid, bm25(chunks_fts, 1.0, ?) AS s FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid"
                f" WHERE chunks_fts MATCH ? AND c.live = 1 AND {where} ORDER BY s LIMIT ?"
            )
        sql = f"WITH m AS ({ranked}) SELECT {_COLUMNS}, m.s FROM m JOIN chunks c ON c.rowid = m.rid ORDER BY m.s"
        with self._reading() as conn:
            rows = conn.execute(sql, [self._context_weight, match, *params, limit]).fetchall()
        return [Hit(_record(r), -float(r[-1])) for r in rows]

    def vector_search(self, vector: np.ndarray, flt: ChunkFilter, limit: int) -> list[Hit]:
        with self._reading() as conn, self._snapshot(conn) as (matrix, rowids):
            if not len(rowids):
                return []
            where, params = _filter_sql(flt, alias="c")
            if where != "1=1":
                allowed = np.fromiter(
                    (r[0] for r in conn.execute(f"SELECT c.rowid FROM chunks c WHERE {where}", params)),
                    dtype=np.int64,
                )
                positions = np.searchsorted(rowids, allowed)
                inside = positions < len(rowids)
                positions, allowed = positions[inside], allowed[inside]
                positions = positions[rowids[positions] == allowed]
                if not len(positions):
                    return []
                scores = matrix[positions] @ vector
            else:
                positions = None
                scores = matrix @ vector
            k = min(limit, len(scores))
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top], kind="stable")]
            chosen = rowids[positions[top]] if positions is not None else rowids[top]
            by_rowid = self._fetch_by_rowid(conn, [int(x) for x in chosen])
        return [Hit(by_rowid[int(r)], float(s)) for r, s in zip(chosen, scores[top], strict=True) if int(r) in by_rowid]

    @staticmethod
    def _fetch_by_rowid(conn: sqlite3.Connection, rowids: list[int]) -> dict[int, ChunkRecord]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        rows = conn.execute(f"SELECT c.rowid, {_COLUMNS} FROM chunks c WHERE c.rowid IN ({marks})", rowids)
        return {r[0]: _record(r[1:]) for r in rows}

    @contextmanager
    def _snapshot(self, conn: sqlite3.Connection) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """A read transaction on ``conn`` and the vector matrix (with its rowids) of exactly what it sees, so that
        a filter's rows and the matrix agree. The matrix is brought up to date when a write (this process or
        another one) moved the generation on: appended rows are added, a delete reloads it. When another thread
        has already moved the matrix past this transaction's view, the transaction starts again, newer."""
        while True:
            conn.execute("BEGIN")
            try:
                state = conn.execute("SELECT generation, delete_generation FROM store_state WHERE id = 1").fetchone()
                gen, del_gen = int(state[0]), int(state[1])
                matrix, rowids, seen = self._vectors
                if (gen, del_gen) != seen:
                    with self._matrix_lock:
                        matrix, rowids, seen = self._vectors
                        if gen >= seen[0] and del_gen >= seen[1] and (gen, del_gen) != seen:
                            self._vectors = self._load_matrix(conn, gen, del_gen)
                            matrix, rowids, seen = self._vectors
                if (gen, del_gen) == seen:
                    yield matrix, rowids
                    return
            finally:
                conn.execute("COMMIT")

    def _load_matrix(
        self, conn: sqlite3.Connection, gen: int, del_gen: int
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        base_m, base_r, (_, seen_del) = self._vectors
        after = int(base_r[-1]) if del_gen == seen_del and len(base_r) else -1
        rows = conn.execute(
            "SELECT rowid, vector FROM chunks WHERE rowid > ? AND live = 1 ORDER BY rowid", (after,)
        ).fetchall()
        dim = self._dim or (len(rows[0][1]) // 4 if rows else 0)
        new_r = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        new_m = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        if after >= 0:
            return (
                (np.vstack([base_m, new_m]) if len(rows) else base_m),
                np.concatenate([base_r, new_r]),
                (gen, del_gen),
            )
        return np.ascontiguousarray(new_m), new_r, (gen, del_gen)


_COLUMNS = "c.chunk_id, c.document_id, c.collection, c.ordinal, c.title, c.text, c.source, c.metadata, c.acl"


def _record(r: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=r[0],
        document_id=r[1],
        collection=r[2],
        ordinal=r[3],
        title=r[4],
        text=r[5],
        source=SourcePosition.from_dict(json.loads(r[6])),
        metadata=json.loads(r[7]),
        acl=json.loads(r[8]) if r[8] else None,
    )


def _filter_sql(flt: ChunkFilter, alias: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if flt.collection is not None:
        clauses.append(f"{alias}.collection = ?")
        params.append(flt.collection)
    if flt.collections is not None:
        if not flt.collections:
            return "1=0", []
        clauses.append(f"{alias}.collection IN ({','.join('?' * len(flt.collections))})")
        params.extend(flt.collections)
    if flt.document_ids is not None:
        if not flt.document_ids:
            return "1=0", []
        clauses.append(f"{alias}.document_id IN ({','.join('?' * len(flt.document_ids))})")
        params.extend(flt.document_ids)
    for key, value in flt.metadata.items():
        if not METADATA_KEY.match(key):
            raise BadInput(f"metadata filter key {key!r} is not allowed: use letters, digits, _ . : -")
        path = f'$."{key}"'
        values = value if isinstance(value, list) else [value]
        if not values:
            return "1=0", []
        ors = []
        for v in values:
            # `->` yields the JSON text of the value, so "1", 1 and true stay distinct; lists match by element.
            ors.append(
                f"({alias}.metadata -> ? = ? OR EXISTS (SELECT 1 FROM json_each({alias}.metadata, ?) j"
                " WHERE j.type NOT IN ('object', 'array') AND"
                " (CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE json_quote(j.value) END) = ?))"
            )
            encoded = json.dumps(v, ensure_ascii=False)
            params.extend([path, encoded, path, encoded])
        clauses.append("(" + " OR ".join(ors) + ")")
    if flt.principals is not None:
        marks = ",".join("?" * len(flt.principals)) or "NULL"
        clauses.append(
            f"({alias}.acl IS NULL OR EXISTS (SELECT 1 FROM chunk_acl a WHERE a.rowid = {alias}.rowid"
            f" AND a.principal IN ({marks})))"
        )
        params.extend(flt.principals)
    return (" AND ".join(clauses) or "1=1"), params
