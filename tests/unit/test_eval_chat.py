"""Chat eval: the question file reader's messages and the aggregate figures, computed by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from app.eval.chat import aggregate, load_questions, score
from app.eval.dataset import DatasetError, load_beir


@dataclass
class _Answer:
    answer: str
    grounded: bool


def _file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_answerable_and_unanswerable_questions(tmp_path: Path):
    path = _file(
        tmp_path,
        '{"id": "a", "question": "How long is leave?", "doc_ids": ["leave"], "must_contain": "10 days"}',
        "",
        '{"id": "b", "question": "Who is the CEO?", "answerable": false}',
        '{"question": "何日ですか", "doc_ids": "leave-ja"}',
    )
    a, b, c = load_questions(path)
    assert (a.answerable, a.doc_ids, a.must_contain) == (True, ("leave",), ("10 days",))
    assert (b.answerable, b.doc_ids) == (False, ())
    assert (c.id, c.doc_ids) == ("line-4", ("leave-ja",))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a", "question": "Why?"}', "give the expected 'doc_ids', or 'answerable': false"),
        ('{"id": "a", "question": "Why?", "doc_ids": ["x"], "answerable": false}', "cannot name doc_ids"),
        ('{"id": "a", "doc_ids": ["x"]}', "non-empty 'question'"),
        ("not json", "not valid JSON"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, message: str):
    path = _file(tmp_path, '{"id": "ok", "question": "Fine?", "doc_ids": ["x"]}', line)
    with pytest.raises(DatasetError) as info:
        load_questions(path)
    assert f"{path}:2" in str(info.value) and message in str(info.value)


def test_aggregates_by_hand(tmp_path: Path):
    path = _file(
        tmp_path,
        '{"id": "right", "question": "q1", "doc_ids": ["gpl3"], "must_contain": "Reinstated"}',
        '{"id": "wrong-doc", "question": "q2", "doc_ids": ["cc0"], "must_contain": "public domain"}',
        '{"id": "missed", "question": "q3", "doc_ids": ["mpl2"]}',
        '{"id": "declined", "question": "q4", "answerable": false}',
        '{"id": "invented", "question": "q5", "answerable": false}',
    )
    q = {x.id: x for x in load_questions(path)}
    outcomes = [
        # two citations, one expected; the phrase matches whatever its case and spacing
        score(q["right"], _Answer("Your licence is  reinstated [1] ... [2]", True), ["gpl3", "gpl2"], 10.0),
        score(q["wrong-doc"], _Answer("Apache says ... [1]", True), ["apache"], 20.0),
        score(q["missed"], _Answer("The documents do not cover this question.", False), [], 30.0),
        score(q["declined"], _Answer("The documents do not cover this question.", False), [], 40.0),
        score(q["invented"], _Answer("Something [1]", True), ["bsd"], 50.0),
    ]
    assert [o.cited_expected for o in outcomes] == [True, False, False, None, None]
    assert [o.contains for o in outcomes] == [True, False, None, None, None]
    metrics, counts = aggregate(outcomes)
    assert metrics["citation_accuracy"] == pytest.approx(1 / 3)
    assert metrics["citation_precision"] == pytest.approx(1 / 3)  # gpl3 of gpl3, gpl2, apache
    assert metrics["not_covered_precision"] == pytest.approx(1 / 2)  # 2 declined, 1 rightly
    assert metrics["not_covered_recall"] == pytest.approx(1 / 2)  # 2 unanswerable, 1 declined
    assert metrics["not_covered_accuracy"] == pytest.approx(3 / 5)  # right, wrong-doc (covered), declined
    assert metrics["contain_rate"] == pytest.approx(1 / 2)
    assert counts == {"questions": 5, "answerable": 3, "unanswerable": 2, "declined": 2, "with_phrase": 2}


def test_figures_with_nothing_to_count_are_none():
    metrics, _ = aggregate([])
    assert set(metrics.values()) == {None}


def test_a_chat_only_dataset_needs_only_the_corpus(tmp_path: Path):
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "title": "T", "text": "x", "format": "markdown"}\n')
    data = load_beir(tmp_path, retrieval=False)
    assert data.corpus[0].format == "markdown" and data.queries == {}
    with pytest.raises(DatasetError, match="queries.jsonl: file not found"):
        load_beir(tmp_path)
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "x", "format": "pdf"}\n')
    with pytest.raises(DatasetError, match="'format' must be one of text, markdown, html"):
        load_beir(tmp_path, retrieval=False)
