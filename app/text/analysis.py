"""Keyword analysis shared by every backend, so English and Japanese tokenize alike everywhere.

Japanese has no spaces: SudachiPy (with its core dictionary, installed from PyPI) cuts it into words
and normalizes spelling variants. Latin-script words are lower-cased and Snowball-stemmed. Particles,
auxiliaries, punctuation and common English stop words are dropped.
"""

from __future__ import annotations

import re
import threading
import unicodedata

import Stemmer
from sudachipy import Dictionary, SplitMode

_DROP_POS = {"助詞", "助動詞", "補助記号", "空白", "記号"}
_SPLIT_LATIN = re.compile(r"[0-9a-z]+(?:'[a-z]+)?")
STOP_WORDS = frozenset(
    """
    a an and are as at be but by can could did do does for from had has have how i if in into is it its
    me my of on or our so than that the their them then there these they this to was we were what when
    where which who whom why will with would you your about after before also any all may might must
    shall should not no
    """.split()
)
# Sudachi's input limit is 49149 bytes; cut long texts into pieces well below it.
_MAX_PIECE_CHARS = 8000
# A keyword query keeps this many distinct terms: more than any question a person types, where a 4,000-character
# chat message has hundreds (OpenSearch refuses a query of more than 1,024 clauses, and SQLite scores every chunk
# that matches any of them). A longer one keeps its first and its last terms (a pasted text, then the question),
# half each; only its first and last MAX_QUERY_CHARS characters are analyzed.
MAX_QUERY_TERMS = 64
MAX_QUERY_CHARS = 4_000


class Analyzer:
    """Thread-safe text → tokens. One Sudachi tokenizer per thread (they are not shareable)."""

    def __init__(self) -> None:
        self._dictionary = Dictionary(dict="core")
        self._local = threading.local()

    def _tokenizer(self):  # type: ignore[no-untyped-def]
        tok = getattr(self._local, "tok", None)
        if tok is None:
            tok = self._dictionary.tokenizer(mode=SplitMode.A)
            self._local.tok = tok
            self._local.stemmer = Stemmer.Stemmer("english")
        return tok

    def tokens(self, text: str) -> list[str]:
        tok = self._tokenizer()
        stemmer = self._local.stemmer
        text = unicodedata.normalize("NFKC", text)
        out: list[str] = []
        for piece in _pieces(text):
            for m in tok.tokenize(piece):
                surface = m.surface().strip().lower()
                if not surface:
                    continue
                if surface.isascii():
                    # Latin words are kept whatever part of speech Sudachi guesses ("omega" is a 記号 to it)
                    for word in _SPLIT_LATIN.findall(surface):
                        if word not in STOP_WORDS:
                            out.append(stemmer.stemWord(word))
                elif m.part_of_speech()[0] not in _DROP_POS:
                    out.append(m.normalized_form().lower())
        return out

    def query_terms(self, text: str, limit: int = MAX_QUERY_TERMS) -> list[str]:
        """The distinct terms of a keyword query in the order they come: all of them, or, past ``limit``, the
        first and the last ``limit / 2``."""
        if len(text) > 2 * MAX_QUERY_CHARS:
            text = text[:MAX_QUERY_CHARS] + "\n" + text[-MAX_QUERY_CHARS:]
        terms = list(dict.fromkeys(self.tokens(text)))
        if len(terms) <= limit:
            return terms
        return terms[: limit // 2] + terms[len(terms) - (limit - limit // 2) :]


def _pieces(text: str) -> list[str]:
    if len(text) <= _MAX_PIECE_CHARS:
        return [text]
    pieces, start = [], 0
    while start < len(text):
        end = min(start + _MAX_PIECE_CHARS, len(text))
        if end < len(text):
            cut = max(text.rfind(ch, start, end) for ch in ("\n", "。", ". ", " "))
            if cut > start:
                end = cut + 1
        pieces.append(text[start:end])
        start = end
    return pieces


_default: Analyzer | None = None
_lock = threading.Lock()


def default_analyzer() -> Analyzer:
    global _default
    with _lock:
        if _default is None:
            _default = Analyzer()
        return _default
