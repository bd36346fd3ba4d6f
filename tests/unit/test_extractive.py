"""The extractive answerer: evidence from the best-ranked passage that supports the question, cited alone."""

from __future__ import annotations

import re

import pytest

from app.providers.base import GenerationRequest, Source, Turn
from app.providers.local import ExtractiveAnswerer
from app.text.analysis import default_analyzer

GPL2 = Source(
    1,
    "GNU General Public License, Version 2",
    "You may charge a fee for the physical act of transferring a copy, and you may at your option offer "
    "warranty protection in exchange for a fee. Each time you redistribute the Program, the recipient "
    "automatically receives a license from the original licensor.",
    "GNU General Public License, Version 2",
)
GPL1 = Source(
    2,
    "GNU General Public License, Version 1",
    "You may charge a fee for the physical act of transferring a copy. The act of running the Program is not "
    "restricted.",
    "GNU General Public License, Version 1",
)
APACHE = Source(
    3,
    "Apache License, Version 2.0",
    "Grant of Patent License. Each Contributor hereby grants to You a perpetual, worldwide, royalty-free patent "
    "license to make, use and sell the Work.",
    "Apache License, Version 2.0 > TERMS AND CONDITIONS",
)


def answer(question: str, *sources: Source, history: list[Turn] | None = None) -> str:
    model = ExtractiveAnswerer(default_analyzer())
    return model.generate(GenerationRequest(question, list(sources), history=history or [])).text


def cited(text: str) -> set[int]:
    return {int(n) for group in re.findall(r"\[([\d, ]+)\]", text) for n in group.split(",")}


def test_quotes_the_best_ranked_supporting_passage_and_cites_it_alone():
    # the same sentence is in two licences: the answer comes from the first, and cites only it
    text = answer("Can I charge a fee for transferring a copy?", GPL2, GPL1)
    assert text.startswith("You may charge a fee for the physical act of transferring a copy")
    assert cited(text) == {1}
    swapped = answer("Can I charge a fee for transferring a copy?", GPL1, GPL2)
    assert cited(swapped) == {2}  # order is the retrieval's decision, the answerer follows it


def test_a_later_passage_answers_when_the_first_does_not_support_the_question():
    text = answer("Does a contributor grant a patent license?", GPL2, APACHE)
    assert "royalty-free patent license" in text and cited(text) == {3}


def test_a_matching_title_does_not_make_every_sentence_an_answer():
    # "Version 2" and "GNU" are in the title; no sentence of the passage is about trademarks
    assert "do not cover" in answer("What does the GNU license version 2 say about trademarks?", GPL2)


@pytest.mark.parametrize(
    ("question", "expected"),
    [("What is the boiling point of mercury?", "do not cover"), ("富士山の高さは？", "見つかりませんでした")],
)
def test_not_covered_when_no_passage_supports_the_question(question: str, expected: str):
    text = answer(question, GPL2, GPL1, APACHE)
    assert expected in text and cited(text) == set()


def test_question_words_alone_do_not_count_as_support():
    # "how many", "please tell me": no licence sentence is about anything the question asks
    assert "do not cover" in answer("Please tell me how many offices there are?", GPL2, APACHE)


def test_a_follow_up_borrows_the_earlier_question_but_needs_words_of_its_own():
    history = [Turn("user", "Can I charge a fee for a copy under the GPL?"), Turn("assistant", "Yes [1]")]
    follow = answer("And for warranty protection?", GPL2, GPL1, history=history)
    assert "warranty protection in exchange for a fee" in follow and cited(follow) == {1}
    # the earlier words alone (fee, copy) do not make an unrelated follow-up covered
    assert "do not cover" in answer("And what about trademarks?", GPL2, GPL1, history=history)


def test_a_follow_up_is_answered_from_the_conversations_subject():
    allowance = Source(1, "Remote work", "Remote workers receive a monthly allowance of 3,000 yen.", "Remote work")
    leave = Source(2, "Leave policy", "Employees receive 10 days of paid leave a year.", "Leave policy")
    eligibility = Source(3, "Remote work", "Staff may work from home up to three days a week.", "Remote work > Who")
    history = [Turn("user", "What is the remote work allowance?"), Turn("assistant", "3,000 yen [1]")]
    # "days" is in the leave policy too, ranked higher; the follow-up is about remote work
    follow = answer("And how many days a week?", allowance, leave, eligibility, history=history)
    assert "three days a week" in follow and cited(follow) == {3}
