"""What a chunk is indexed with besides its own text: the document title and the chunk's heading path.

A chunk of a long document rarely names what it belongs to: the third chunk of the CC0 deed never says "CC0"
or "public domain dedication", and a section of the GPL version 3 never says "version 3". So the embedder reads
``<title> > <heading> > <sub-heading>`` above the chunk's text, and the keyword index keeps the analyzed
context in a field of its own, weighted in BM25 (``KS_KEYWORD_CONTEXT_WEIGHT``). The stored text and its offsets
stay exactly the document's, so citations still point at what the document says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.text.analysis import Analyzer


def context_line(title: str, heading_path: Sequence[str]) -> str:
    """``title > heading > sub-heading``; a heading that repeats the title (a Markdown H1) is said once."""
    parts: list[str] = []
    for piece in (title, *heading_path):
        piece = " ".join(piece.split())
        if piece and piece not in parts:
            parts.append(piece)
    return " > ".join(parts)


def embedding_text(context: str, text: str) -> str:
    """What the embedder reads for a chunk: its context line, a blank line, then its text."""
    return f"{context}\n\n{text}" if context else text


@dataclass(frozen=True, slots=True)
class IndexedText:
    embed: str  # the text given to the embedder
    tokens: str  # analyzed tokens of the chunk's text, space separated
    context: str  # analyzed tokens of its context line


def index_text(analyzer: Analyzer, title: str, heading_path: Sequence[str], text: str) -> IndexedText:
    """The same at ingest and at re-index, so a rebuilt index matches a fresh one."""
    context = context_line(title, heading_path)
    return IndexedText(
        embed=embedding_text(context, text),
        tokens=" ".join(analyzer.tokens(text)),
        context=" ".join(analyzer.tokens(context)),
    )
