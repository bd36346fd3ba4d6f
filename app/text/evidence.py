"""Sentence-level evidence: how well the best sentence of a passage covers a question's words.

A chunk's vector is one pooled summary of 600 characters, so a chunk that mentions every word of a question
somewhere ranks like one with a sentence that answers it. This module looks deeper: each passage is cut into
sentences, and a sentence's *coverage* is the share of the question's words it contains (with the passage's
title and headings, which the sentence belongs to), each word weighted by its rarity among the passages at hand
(IDF), so "licence" counts little in a pile of licences and "reinstated" a lot. A question word found in none
of the passages weighs the most: a question about a name no passage mentions is not covered.

It serves two callers: the second stage of search (``app.search.second_stage``) and the extractive answerer
(``app.providers.local``), which quotes the covering sentences.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from app.text.analysis import Analyzer

# Words that frame a question rather than say what it is about ("how many", "please tell me", "どうすれば良い",
# "教えて下さい"), as the analyzer writes them (Snowball stems; Sudachi's normalized forms). Passages rarely
# contain them, so by rarity alone they would weigh the most.
QUESTION_WORDS = frozenset(
    """
    mani much pleas tell explain know want suppos someth anyth thing exact actual realli just get got am way kind
    為る 居る 有る 成る 出来る 言う 遣る どう どういう どんな どの どこ 何処 いつ 何時 何 誰 良い 教える 下さる
    こと 事 よう 様 時 的 具体 方法 仕方 御 で
    """.split()
)
_HAS_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e]")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_BREAK = re.compile(r"(?<=[。！？!?])|(?<=[.])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage. Hard-wrapped lines inside a paragraph are joined first: with a space, or with
    nothing between two Japanese characters."""
    out: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        joined = ""
        for line in lines:
            glue = "" if joined and _HAS_JAPANESE.match(joined[-1]) and _HAS_JAPANESE.match(line[0]) else " "
            joined = f"{joined}{glue}{line}" if joined else line
        out.extend(s.strip() for s in _SENTENCE_BREAK.split(joined) if len(s.strip()) > 1)
    return out


@dataclass(frozen=True, slots=True)
class Passage:
    text: str
    context: str = ""  # the title and heading path (app.text.context.context_line)


@dataclass(frozen=True, slots=True)
class SentenceScore:
    passage: int  # index into the passages given
    sentence: int  # index of the sentence within its passage
    text: str
    coverage: float  # 0..1: the share of the question's weighted words in the sentence and its context
    own: float  # the same, from the sentence's own words
    novel: float  # the same, from its own words that its context does not already hold
    score: float  # coverage, plus a little for the earlier turn's words: to order sentences
    heading: bool  # the sentence is one of its passage's headings (a title line, not evidence)


class _Cache:
    """Recent texts' analysis: a chunk that answers many questions is cut and analyzed once."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, object] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: str) -> object | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: object) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)


_sentences_cache = _Cache()
_context_cache = _Cache(1024)


class Evidence:
    """The question's words weighed over ``passages``, and every sentence's coverage of them."""

    def __init__(self, analyzer: Analyzer, question: str, passages: Sequence[Passage], *, extra: str = "") -> None:
        """``extra``: earlier words of the conversation, weighted half (a follow-up borrows its subject)."""
        self._analyzer = analyzer
        self.passages = list(passages)
        self._sentences = [self._analyzed_sentences(p.text) for p in self.passages]
        self._contexts = [self._analyzed_context(p.context) for p in self.passages]
        words = [t for t in analyzer.tokens(question) if t not in QUESTION_WORDS]
        earlier = [t for t in (analyzer.tokens(extra) if extra else []) if t not in QUESTION_WORDS]
        df: Counter[str] = Counter()
        self._vocabulary: set[str] = set()  # every word of the passages, their titles and headings
        for sentences, context in zip(self._sentences, self._contexts, strict=True):
            seen = set(context)
            for _, tokens in sentences:
                seen |= tokens
            df.update(t for t in {*words, *earlier} if t in seen)
            self._vocabulary |= seen
        n = max(len(self.passages), 1)

        def idf(t: str) -> float:
            return math.log(1 + n / (1 + df.get(t, 0)))

        self._df = df
        self.weights = {t: idf(t) for t in words}
        # half weight, and only to order sentences: an earlier turn's words never make a sentence qualify alone
        self.earlier = {t: 0.5 * idf(t) for t in earlier if t not in self.weights}
        self._total = sum(self.weights.values())

    def _analyzed_sentences(self, text: str) -> list[tuple[str, frozenset[str]]]:
        cached = _sentences_cache.get(text)
        if cached is None:
            cached = [(s, frozenset(self._analyzer.tokens(s))) for s in split_sentences(text)]
            _sentences_cache.put(text, cached)
        return cached  # type: ignore[return-value]

    def _analyzed_context(self, context: str) -> frozenset[str]:
        if not context:
            return frozenset()
        cached = _context_cache.get(context)
        if cached is None:
            cached = frozenset(self._analyzer.tokens(context))
            _context_cache.put(context, cached)
        return cached  # type: ignore[return-value]

    def coverage(self, tokens: frozenset[str]) -> float:
        """Weighted share of the question's words in ``tokens``; 0 for a question with no content words."""
        if not self._total:
            return 0.0
        return sum(w for t, w in self.weights.items() if t in tokens) / self._total

    def sentences(self, passage: int) -> list[SentenceScore]:
        """Every sentence of one passage with its coverage (its passage's context words count for it)."""
        context = self._contexts[passage]
        headings = {" ".join(h.split()) for h in self.passages[passage].context.split(" > ")}
        out = []
        for i, (text, tokens) in enumerate(self._sentences[passage]):
            words = tokens | context
            coverage = self.coverage(words)
            bonus = sum(w for t, w in self.earlier.items() if t in words) / (self._total or 1.0)
            heading = " ".join(text.split()) in headings
            out.append(
                SentenceScore(
                    passage,
                    i,
                    text,
                    coverage,
                    self.coverage(tokens),
                    self.coverage(tokens - context),
                    coverage + 0.25 * bonus,
                    heading,
                )
            )
        return out

    def supporting(self, passage: int, min_coverage: float, *, trusted: bool = False) -> list[SentenceScore]:
        """The passage's sentences that support the question: at least ``min_coverage`` with their context, and
        a question word of their own that the title and headings do not already hold, so a matching title does
        not make every sentence an answer. When the headings and the sentence hold (nearly) every word of the
        question, as under an FAQ heading that asks it, a question word in the sentence is enough; for a
        ``trusted`` passage (retrieval put its document clearly first) it is enough at any coverage: under a
        heading that names the question's subject, a sentence about it rarely repeats the subject's words.
        Headings are left out."""
        return [
            s
            for s in self.sentences(passage)
            if not s.heading
            and s.coverage >= min_coverage
            and (s.novel > 0 or (s.own > 0 and (trusted or s.coverage >= 0.9)))
        ]

    def unheld(self) -> list[str]:
        """The question's words that no passage holds, neither in its text nor in its title and headings."""
        return [t for t in self.weights if not self._df.get(t)]

    def holds(self, text: str) -> bool:
        """Whether the passages (their text, titles or headings) hold every word of ``text``, numbers aside."""
        words = [t for t in self._analyzer.tokens(text) if not t.isdigit() and t not in QUESTION_WORDS]
        return all(t in self._vocabulary for t in words)

    def mentions_earlier(self, passage: int) -> bool:
        """Whether the passage (its sentences or headings) holds a word of the earlier turn: a follow-up
        ("and how many days?") is about what the conversation was about."""
        if not self.earlier:
            return True
        words = set(self._contexts[passage])
        for _, tokens in self._sentences[passage]:
            words |= tokens
        return any(t in words for t in self.earlier)

    def best(self, passage: int) -> float:
        """The coverage of the passage's best sentence that says something itself (0 when none does)."""
        return max((s.coverage for s in self.sentences(passage) if s.own > 0 and not s.heading), default=0.0)
