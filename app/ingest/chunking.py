"""Cut a parsed document into retrieval chunks that stay inside one page and one section.

A chunk's text is always ``doc.text[char_start:char_end]``: nothing is added or rewritten, so a citation
can be highlighted in the original text. Within a section, whole blocks are packed up to ``size``
characters; a block that does not fit alone is cut at sentence ends (English ``.?!`` + space, Japanese
``。！？．``, newlines), and a sentence longer than ``size`` at the last whitespace, or hard at ``size``
(Japanese has no spaces). Every chunk is at most ``size`` characters. The next chunk of a section
repeats up to ``overlap`` characters of whole sentences from the end of the previous one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.ingest.parsers.base import Block, ParsedDocument
from app.stores.vector.base import SourcePosition

_SENTENCE_END = re.compile(r"[.?!]+[\"')\]]*(?=\s)|[。！？．]+[」』）\"')\]]*|\n")


@dataclass(slots=True)
class ChunkDraft:
    text: str
    source: SourcePosition


@dataclass(slots=True)
class _Atom:
    """The smallest piece a chunk boundary may fall between: a sentence, or part of an overlong one."""

    start: int
    end: int
    block: int
    heading: bool
    whole: bool  # a whole sentence (only those are repeated as overlap)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _cut(text: str, start: int, end: int, first_limit: int, limit: int) -> list[tuple[int, int]]:
    """Split [start, end) into pieces of at most ``first_limit`` then ``limit`` chars, at whitespace if any."""
    pieces: list[tuple[int, int]] = []
    cap = first_limit
    while start < end:
        if end - start <= cap:
            pieces.append((start, end))
            break
        cut = start + cap
        space = cut
        while space > start and not text[space].isspace():
            space -= 1
        stop = space if space > start else cut
        pieces.append(_trim(text, start, stop))
        start, _ = _trim(text, stop, end)
        cap = limit
    return pieces


def _atoms(text: str, blocks: list[Block], size: int) -> list[_Atom]:
    atoms: list[_Atom] = []
    for index, block in enumerate(blocks):
        sentence_start = block.start
        bounds = [m.end() for m in _SENTENCE_END.finditer(text, block.start, block.end)] + [block.end]
        for bound in bounds:
            start, end = _trim(text, sentence_start, bound)
            sentence_start = bound
            if start == end:
                continue
            whole = end - start <= size
            for piece_start, piece_end in _cut(text, start, end, size, size):
                atoms.append(_Atom(piece_start, piece_end, index, block.is_heading, whole))
    return atoms


def _sections(blocks: list[Block]) -> list[list[Block]]:
    """Runs of blocks on one page under one heading path; every heading opens a new section."""
    sections: list[list[Block]] = []
    for block in blocks:
        current = sections[-1] if sections else None
        same = (
            current is not None
            and not block.is_heading
            and (block.page, block.heading_path) == (current[-1].page, current[-1].heading_path)
        )
        if current is not None and same:
            current.append(block)
        else:
            sections.append([block])
    return sections


def _pack(text: str, atoms: list[_Atom], size: int, overlap: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    first = 0  # first atom of the chunk being built
    fresh = 0  # first atom no chunk has covered yet
    while first < len(atoms):
        stop = first + 1
        while stop < len(atoms) and atoms[stop].end - atoms[first].start <= size:
            stop += 1
        if stop < len(atoms):
            # Prefer ending at a block boundary, but never with only headings and never without new text.
            # A heading only ever opens its section, so "only headings" means "the last atom is one".
            boundaries = [
                k
                for k in range(max(first, fresh) + 1, stop + 1)
                if atoms[k].block != atoms[k - 1].block and not atoms[k - 1].heading
            ]
            if boundaries:
                stop = boundaries[-1]
            elif atoms[stop - 1].heading:
                room = size - (atoms[stop].start - atoms[first].start)
                if room > 0:  # cut the next atom so that its start fits after the heading
                    nxt = atoms[stop]
                    pieces = _cut(text, nxt.start, nxt.end, room, size)
                    atoms[stop : stop + 1] = [_Atom(s, e, nxt.block, nxt.heading, whole=False) for s, e in pieces]
                    continue
        spans.append((atoms[first].start, atoms[stop - 1].end))
        fresh = stop
        first = _overlap_start(atoms, first, stop, size, overlap)
    return spans


def _overlap_start(atoms: list[_Atom], first: int, stop: int, size: int, overlap: int) -> int:
    """Where the next chunk starts: ``stop``, or earlier to repeat trailing whole sentences."""
    if stop >= len(atoms):
        return stop
    start = stop
    # Never the chunk's first atom: the next chunk must not contain the whole previous one.
    for k in range(stop - 1, first, -1):
        atom = atoms[k]
        if (
            not atom.whole
            or atom.heading
            or atoms[stop - 1].end - atom.start > overlap
            or atoms[stop].end - atom.start > size
        ):
            break
        start = k
    return start


def chunk_document(doc: ParsedDocument, size: int, overlap: int) -> list[ChunkDraft]:
    """Chunks of at most ``size`` characters, each an exact slice of ``doc.text`` with its position."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size (got size={size}, overlap={overlap})")
    drafts: list[ChunkDraft] = []
    for section in _sections(doc.blocks):
        for start, end in _pack(doc.text, _atoms(doc.text, section, size), size, overlap):
            position = SourcePosition(start, end, section[0].page, list(section[0].heading_path))
            drafts.append(ChunkDraft(doc.text[start:end], position))
    return drafts
