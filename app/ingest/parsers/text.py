"""Plain text parser, plus the helpers every parser shares: decoding, newline clean-up, block assembly."""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

from app.core.errors import Unprocessable
from app.ingest.parsers.base import Block, ParsedDocument

CONTENT_TYPE = "text/plain"

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# charset-normalizer's "mess" ratio; above this its guess is not trusted.
_MAX_CHAOS = 0.1
_BLANK_LINES = re.compile(r"\n{2,}")


def has_bom(data: bytes) -> bool:
    return any(data.startswith(bom) for bom, _ in _BOMS)


def decode_text(data: bytes) -> str | None:
    """The bytes as text: BOM, then UTF-8, then a confident charset-normalizer guess; None if not text."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is None or best.chaos > _MAX_CHAOS:
        return None
    return str(best)


def normalize(text: str) -> str:
    """\\r\\n and \\r become \\n, trailing spaces go; every other character is kept as it is (no NFKC)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n"))


class HeadingTrail:
    """The current heading path: a new heading of level N replaces every open heading of level >= N."""

    def __init__(self) -> None:
        self._open: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        while self._open and self._open[-1][0] >= level:
            self._open.pop()
        self._open.append((level, title))

    @property
    def path(self) -> list[str]:
        return [title for _, title in self._open]


class DocBuilder:
    """Joins block texts with blank lines into ``ParsedDocument.text`` and records each block's offsets."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        self.blocks: list[Block] = []
        self._parts: list[str] = []
        self._length = 0

    def add(self, text: str, heading_path: list[str], *, page: int | None = None, is_heading: bool = False) -> None:
        # Leading indentation is kept (code blocks); surrounding blank lines are not.
        text = normalize(text).strip("\n")
        if not text.strip():
            return
        if self._parts:
            self._parts.append("\n\n")
            self._length += 2
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self.blocks.append(Block(text, start, self._length, list(heading_path), page, is_heading))

    def build(self, title: str | None, *, empty_detail: str) -> ParsedDocument:
        if not self.blocks:
            raise Unprocessable(empty_detail)
        title = " ".join(title.split()) if title else None
        return ParsedDocument("".join(self._parts), self.blocks, title or None, self.content_type)


NO_TEXT = "The document contains no extractable text: upload a file with text in it"


def parse(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    if text is None:
        raise Unprocessable(
            "The file is not valid text: it is not UTF-8 and its encoding could not be detected "
            "with confidence. Save it as UTF-8 and upload it again"
        )
    builder = DocBuilder(CONTENT_TYPE)
    for paragraph in _BLANK_LINES.split(normalize(text)):
        builder.add(paragraph, [])
    return builder.build(None, empty_detail=NO_TEXT)
