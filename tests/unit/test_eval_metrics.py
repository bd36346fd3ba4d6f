"""Retrieval metrics against hand-computed examples, and the BEIR reader's error messages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from app.eval.dataset import DatasetError, load_beir
from app.eval.metrics import (
    mean,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    query_metrics,
    recall_at_k,
    unique_in_order,
)

RANKED = ["d3", "d1", "d7", "d2", "d9"]


def test_ndcg_binary_by_hand():
    relevant = {"d1": 1, "d2": 1}
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # hits at ranks 2 and 4
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(RANKED, relevant, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RANKED, relevant, 3) == pytest.approx((1 / math.log2(3)) / ideal)


def test_ndcg_graded_uses_linear_gain():
    relevant = {"d1": 2, "d3": 1, "d8": 1}  # d8 is never retrieved
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, relevant, 10) == pytest.approx(dcg / ideal)


def test_perfect_and_empty_rankings():
    assert ndcg_at_k(["d1", "d2"], {"d1": 1, "d2": 1}) == pytest.approx(1.0)
    assert ndcg_at_k([], {"d1": 1}) == 0.0
    assert ndcg_at_k(RANKED, {}) == 0.0
    assert ndcg_at_k(RANKED, {"d1": 0}) == 0.0  # grade 0 is not relevant


def test_recall_by_hand():
    relevant = {"d1": 1, "d2": 1, "d8": 1}
    assert recall_at_k(RANKED, relevant, 10) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, {}, 10) == 0.0


def test_mrr_by_hand():
    assert mrr_at_k(RANKED, {"d7": 1, "d9": 1}) == pytest.approx(1 / 3)
    assert mrr_at_k(RANKED, {"d3": 1}) == 1.0
    assert mrr_at_k(RANKED, {"d9": 1}, k=4) == 0.0
    assert mrr_at_k(RANKED, {"d5": 1}) == 0.0


def test_query_metrics_names():
    assert set(query_metrics(RANKED, {"d1": 1})) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}


def test_unique_in_order_keeps_each_documents_best_rank():
    # chunks of d1 at ranks 1 and 3, a chunk with no corpus id at rank 2
    assert unique_in_order(["d1", None, "d1", "d2", "d2", "d3"]) == ["d1", "d2", "d3"]


def test_mean_and_percentile():
    assert mean([]) == 0.0
    assert mean([1.0, 2.0, 6.0]) == 3.0
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 50) == 30.0
    assert percentile(values, 95) == pytest.approx(48.0)  # 40 + 0.8 * 10
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) == 0.0


# --- the BEIR reader -----------------------------------------------------------------------------------
def _write(root: Path, corpus: str, queries: str, qrels: str | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (root / "queries.jsonl").write_text(queries, encoding="utf-8")
    if qrels is not None:
        (root / "qrels").mkdir(exist_ok=True)
        (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


CORPUS = '{"_id": "d1", "title": "T", "text": "one"}\n{"_id": "d2", "text": "two"}\n'
QUERIES = '{"_id": "q1", "text": "first"}\n{"_id": "q2", "text": "second"}\n'
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq3\td2\t1\n"


def test_reads_a_beir_folder(tmp_path):
    data = load_beir(_write(tmp_path / "tiny", CORPUS, QUERIES, QRELS))
    assert data.name == "tiny"
    assert [d.id for d in data.corpus] == ["d1", "d2"]
    assert data.corpus[1].title == ""
    assert data.qrels == {"q1": {"d1": 1}, "q3": {"d2": 1}}  # score 0 is not relevant
    assert data.evaluated == [("q1", "first")]  # q2 has no relevant document, q3 no query text
    assert any("not in queries.jsonl" in w for w in data.warnings)


def test_a_missing_qrels_file_names_the_expected_path(tmp_path):
    root = _write(tmp_path / "noqrels", CORPUS, QUERIES, None)
    with pytest.raises(DatasetError, match=str(root / "qrels" / "test.tsv")):
        load_beir(root)


@pytest.mark.parametrize(
    ("corpus", "qrels", "message"),
    [
        ('{"_id": "d1", "text": "one"}\nnot json\n', QRELS, r"corpus.jsonl:2: not valid JSON"),
        ('{"title": "no id", "text": "x"}\n', QRELS, r"corpus.jsonl:1: '_id' is missing"),
        ('{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n', QRELS, "appears twice"),
        (CORPUS, "q1\td1\t1\n", r"test.tsv:1: the first line must be the header"),
        (CORPUS, "query-id\tcorpus-id\tscore\nq1\td1\n", r"test.tsv:2: expected 3"),
        (CORPUS, "query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"test.tsv:2: score 'high'"),
        (CORPUS, "query-id\tcorpus-id\tscore\nq9\td1\t1\n", "no query of queries.jsonl has a relevant"),
    ],
)
def test_invalid_files_say_where(tmp_path, corpus, qrels, message):
    with pytest.raises(DatasetError, match=message):
        load_beir(_write(tmp_path / "bad", corpus, QUERIES, qrels))


def test_a_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        load_beir(tmp_path / "nowhere")
