"""Plain text parser, plus the helpers every parser shares: decoding, newline clean-up, block assembly."""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator

from charset_normalizer import from_bytes

from app.core.errors import Unprocessable
from app.ingest.parsers.base import Block, ParsedDocument
from app.ingest.payload import Payload

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
_SPACES = re.compile(r"\s+")
# A heading path entry is stored with every chunk of its section, a title on the document: both are cut to a
# sane length (a heading's own block keeps all of its text). A hostile file can hold a 50 MB heading.
MAX_HEADING_CHARS = 300
MAX_TITLE_CHARS = 512


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


def text_encoding(head: bytes, *, partial: bool) -> str | None:
    """The encoding of a file that starts with ``head`` (all of it unless ``partial``); None if not text."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=not partial)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(head).best()
    if best is None or best.chaos > _MAX_CHAOS:
        return None
    return best.encoding


def normalize(text: str) -> str:
    """\\r\\n and \\r become \\n, trailing spaces and NUL characters go (they mean nothing in text, and Postgres
    cannot store them in a conversation that quotes them); every other character is kept as it is (no NFKC)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    if len(text) <= _NORMALIZE_WINDOW:
        return _strip_lines(text)
    # A window of lines at a time: a text of 50 million empty lines would otherwise be a list of 50 million.
    parts, start = [], 0
    while start < len(text):
        end = text.find("\n", start + _NORMALIZE_WINDOW)
        end = len(text) if end == -1 else end
        parts.append(_strip_lines(text[start:end]))  # each window ends just before a line end
        start = end
    return "".join(parts)


_NORMALIZE_WINDOW = 1 << 20


def _strip_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n"))


def collapse_spaces(text: str) -> str:
    """White space runs as one space, trimmed."""
    return sub_windowed(_SPACES, " ", text).strip()


def sub_windowed(pattern: re.Pattern[str], repl: str, text: str, window: int = 1 << 20) -> str:
    """``pattern.sub(repl, text)`` for a pattern of white space runs, a window at a time: ``re.sub`` keeps every
    piece between matches until it joins them, which for 50 MB of one-letter words is a GB."""
    if len(text) <= window:
        return pattern.sub(repl, text)
    parts, start = [], 0
    while start < len(text):
        end = min(start + window, len(text))
        run = pattern.match(text, end)  # a run of spaces at the cut stays whole, in this window
        end = run.end() if run else end
        parts.append(pattern.sub(repl, text[start:end]))
        start = end
    return "".join(parts)


def short_text(text: str, limit: int) -> str:
    """``text`` with white space collapsed, cut to ``limit`` characters."""
    return collapse_spaces(text[: 4 * limit])[:limit].rstrip()


class HeadingTrail:
    """The current heading path: a new heading of level N replaces every open heading of level >= N."""

    def __init__(self) -> None:
        self._open: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        while self._open and self._open[-1][0] >= level:
            self._open.pop()
        self._open.append((level, short_text(title, MAX_HEADING_CHARS)))

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
        title = short_text(title, MAX_TITLE_CHARS) if title else None
        return ParsedDocument("".join(self._parts), self.blocks, title or None, self.content_type)


NO_TEXT = "The document contains no extractable text: upload a file with text in it"


NOT_TEXT = (
    "The file is not valid text: it is not UTF-8 and its encoding could not be detected "
    "with confidence. Save it as UTF-8 and upload it again"
)
# Parts of a streamed file hold about this many characters; a paragraph longer than 4 parts is cut at a line
# end (or, in a file without line ends, anywhere).
WINDOW = 1 << 20


def parse(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    if text is None:
        raise Unprocessable(NOT_TEXT)
    doc = _paragraphs_document(normalize(text))
    if doc is None:
        raise Unprocessable(NO_TEXT)
    return doc


def parse_stream(payload: Payload, window: int | None = None) -> Iterator[tuple[ParsedDocument, float]]:
    """A large text file as consecutive parts of about ``window`` characters, cut between paragraphs, each with
    the share of the file read so far. Joined with blank lines, the parts' texts are what ``parse`` returns for
    the whole file; memory stays a few windows whatever the file's size."""
    window = window or WINDOW
    encoding = text_encoding(payload.head, partial=True)
    if encoding is None:
        raise Unprocessable(NOT_TEXT)
    emitted = False
    with payload.open() as raw:
        # Universal newlines: \r\n and \r arrive as \n, as normalize() would make them.
        reader = io.TextIOWrapper(raw, encoding=encoding, newline=None)
        pending = ""
        while True:
            try:
                block = reader.read(window)
            except UnicodeDecodeError as exc:
                raise Unprocessable(
                    f"The file stops being valid {encoding} text near byte {raw.tell()}: "
                    "save it as UTF-8 and upload it again"
                ) from exc
            body, pending = _take_paragraphs(pending + block, window, final=not block)
            doc = _paragraphs_document(body) if body else None
            if doc is not None:
                emitted = True
                yield doc, (raw.tell() / payload.size if block and payload.size else 1.0)
            if not block:
                break
    if not emitted:
        raise Unprocessable(NO_TEXT)


def _take_paragraphs(buffer: str, window: int, *, final: bool) -> tuple[str, str]:
    """Split ``buffer`` into (whole paragraphs, normalized, to parse now; the rest, for later)."""
    if final:
        return normalize(buffer), ""
    # Only whole lines are normalized: a line's trailing spaces are known only once it ends.
    cut = buffer.rfind("\n") + 1
    if cut == 0:
        return ("", buffer) if len(buffer) < 4 * window else (buffer, "")
    lines, rest = normalize(buffer[:cut]), buffer[cut:]
    paragraph_end = lines.rfind("\n\n")
    if paragraph_end > 0:
        return lines[:paragraph_end], lines[paragraph_end:] + rest
    if len(buffer) < 4 * window:
        return "", lines + rest
    return lines, rest


def _paragraphs_document(text: str) -> ParsedDocument | None:
    builder = DocBuilder(CONTENT_TYPE)
    for paragraph in _BLANK_LINES.split(text):
        builder.add(paragraph, [])
    return builder.build(None, empty_detail=NO_TEXT) if builder.blocks else None
