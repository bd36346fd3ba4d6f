"""`knowledge-search eval` as a real process on a tiny BEIR dataset (both backends through `settings`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from app.core.config import Settings
from tests.integration.test_process import BIN, _env

pytestmark = pytest.mark.process

CORPUS = [
    {"_id": "leave", "title": "Paid leave", "text": "Employees receive 10 days of paid leave after six months."},
    {"_id": "expenses", "title": "Expenses", "text": "Submit travel expense reports within 30 days, with receipts."},
    {"_id": "passwords", "title": "Passwords", "text": "Passwords must be at least 14 characters long."},
    {"_id": "remote", "title": "Remote work", "text": "Staff may work from home up to three days per week."},
    {"_id": "remote-ja", "title": "在宅勤務", "text": "在宅勤務は週3日まで認められます。上長の承認が必要です。"},
    {"_id": "cluster", "title": "Clusters", "text": "The zyxquorp autoscaler adds nodes when pods are pending."},
]
QUERIES = {
    "q-exact": "zyxquorp autoscaler",
    "q-password": "How long must a password be?",
    "q-ja": "在宅勤務は週に何日までできますか",
    "q-leave": "vacation days for new staff",
}
QRELS = {"q-exact": "cluster", "q-password": "passwords", "q-ja": "remote-ja", "q-leave": "leave"}


def _dataset(root: Path, *, qrels: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in CORPUS), "utf-8")
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n" for q, t in QUERIES.items()), "utf-8"
    )
    if qrels:
        (root / "qrels").mkdir()
        rows = "".join(f"{q}\t{d}\t1\n" for q, d in QRELS.items())
        (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows, "utf-8")
    return root


def _eval(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env(settings, COLUMNS="200")  # keep rich from wrapping paths in messages
    return subprocess.run([str(BIN), "eval", *args], env=env, capture_output=True, text=True, timeout=300)


def test_eval_scores_every_mode_and_reuses_the_collection(settings: Settings, tmp_path: Path):
    data = _dataset(tmp_path / "tiny-set")
    out = tmp_path / "results.json"
    run = _eval(settings, str(data), "--out", str(out), "--fusion", "zscore:0.5", "--fusion", "rrf:60")
    assert run.returncode == 0, run.stderr
    assert "nDCG@10" in run.stdout and "hybrid rrf k=60" in run.stdout
    report = json.loads(out.read_text("utf-8"))
    assert report["collection"] == "eval-tiny-set"
    assert report["dataset"]["documents"] == 6 and report["dataset"]["queries"] == 4
    assert report["ingest"]["indexed"] == 6 and not report["ingest"]["reused"]
    modes = {m["label"]: m for m in report["modes"]}
    assert list(modes) == ["keyword", "semantic", "hybrid zscore w=0.5", "hybrid rrf k=60"]
    assert [m["default"] for m in modes.values()] == [False, False, True, False]  # KS_FUSION's default
    for mode in modes.values():
        assert set(mode["metrics"]) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
        assert all(0.0 <= v <= 1.0 for v in mode["metrics"].values()), mode
        assert 0 <= mode["latency_ms"]["p50"] <= mode["latency_ms"]["p95"]
        assert set(mode["per_query"]) == set(QUERIES)
    # the query with a made-up exact term: keyword search ranks its document first
    assert modes["keyword"]["per_query"]["q-exact"]["mrr@10"] == 1.0
    assert modes["keyword"]["per_query"]["q-exact"]["ndcg@10"] == 1.0

    again = _eval(settings, str(data), "--max-queries", "1")
    assert again.returncode == 0, again.stderr
    assert "reused" in again.stdout


def test_a_missing_qrels_file_fails_naming_the_expected_path(tmp_path: Path):
    data = _dataset(tmp_path / "no-qrels", qrels=False)
    run = _eval(Settings(data_dir=tmp_path / "data"), str(data))
    assert run.returncode != 0
    assert str(data / "qrels" / "test.tsv") in run.stderr
    assert "not found" in run.stderr


def test_eval_asks_chat_questions_and_scores_the_answers(settings: Settings, tmp_path: Path):
    data = _dataset(tmp_path / "chat-set", qrels=False)
    (data / "queries.jsonl").unlink()  # --chat-only needs the corpus alone
    questions = data / "chat.jsonl"
    rows = [
        {"id": "pw", "question": "How many characters does a password need?", "doc_ids": ["passwords"]},
        {"id": "pw-phrase", "question": "How long must a password be?", "doc_ids": ["passwords"],
         "must_contain": "14 CHARACTERS"},
        {"id": "ja", "question": "在宅勤務は週に何日までできますか？", "doc_ids": ["remote-ja"]},
        {"id": "none", "question": "Who won the football world cup in 1998?", "answerable": False},
    ]  # fmt: skip
    questions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    out = tmp_path / "chat.json"
    run = _eval(settings, str(data), "--chat-only", "--chat", str(questions), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "cite acc" in run.stdout and "nDCG@10" not in run.stdout
    report = json.loads(out.read_text("utf-8"))
    assert report["modes"] == []
    (chat,) = report["chat"]
    per = {q["id"]: q for q in chat["per_question"]}
    assert per["pw"]["cited"][0] == "passwords" and per["pw"]["cited_expected"]
    assert per["pw-phrase"]["contains"] is True  # case is ignored
    assert per["ja"]["cited_expected"]
    assert per["none"]["grounded"] is False and per["none"]["correct_call"]
    assert chat["metrics"]["citation_accuracy"] == 1.0 and chat["metrics"]["not_covered_recall"] == 1.0
    assert chat["counts"] == {"questions": 4, "answerable": 3, "unanswerable": 1, "declined": 1, "with_phrase": 1}
    assert 0 < chat["latency_ms"]["p50"] <= chat["latency_ms"]["p95"]


def test_a_bad_chat_file_fails_before_any_ingest(tmp_path: Path):
    data = _dataset(tmp_path / "bad-chat")
    questions = data / "chat.jsonl"
    questions.write_text('{"id": "x", "question": "Why?"}\n', "utf-8")
    run = _eval(Settings(data_dir=tmp_path / "data"), str(data), "--chat", str(questions))
    assert run.returncode == 2
    assert f"{questions}:1" in run.stderr and "doc_ids" in run.stderr
