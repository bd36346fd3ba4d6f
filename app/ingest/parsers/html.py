"""HTML: visible text by block element; h1-h6 drive the heading path; table rows become one block each."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, NavigableString, Tag
from bs4.element import PageElement

from app.core.errors import Unprocessable
from app.ingest.parsers.base import ParsedDocument
from app.ingest.parsers.limits import (
    BYTES_PER_TEXT_BYTE,
    DEFAULT_LIMITS,
    HTML_BYTES_PER_TAG,
    ParseLimits,
    check_parse_memory,
    count_tags,
)
from app.ingest.parsers.text import (
    MAX_TITLE_CHARS,
    NO_TEXT,
    DocBuilder,
    HeadingTrail,
    collapse_spaces,
    normalize,
    short_text,
    sub_windowed,
)

CONTENT_TYPE = "text/html"

_DROP = {"script", "style", "nav", "head", "noscript", "template", "svg", "iframe", "object", "button"}
_HEADINGS = {f"h{n}" for n in range(1, 7)}
# Elements that start a new block; anything else (span, a, em, ...) is inline text of its parent.
_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "html", "li", "main", "ol",
    "p", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "ul",
}  # fmt: skip
_STRUCTURE = _HEADINGS | _BLOCKS | {"pre", "tr"}
# HTML collapses ASCII whitespace only: an ideographic space (U+3000) is text and is kept.
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")


def _self_and_descendants(node: PageElement) -> Iterator[PageElement]:
    yield node
    if isinstance(node, Tag):
        yield from node.descendants


def _inline_text(nodes: list[PageElement]) -> str:
    """Text as a browser shows it: whitespace runs collapse to one space, <br> breaks the line."""
    parts: list[str] = []
    for node in nodes:
        for item in _self_and_descendants(node):
            if type(item) is NavigableString:  # not comments, doctypes, CDATA
                parts.append(sub_windowed(_HTML_SPACE, " ", item))
            elif isinstance(item, Tag) and item.name == "br":
                parts.append("\n")
    lines = (sub_windowed(_HTML_SPACE, " ", line).strip(" ") for line in "".join(parts).split("\n"))
    return "\n".join(line for line in lines if line)


class _Walker:
    def __init__(self) -> None:
        self.builder = DocBuilder(CONTENT_TYPE)
        self.trail = HeadingTrail()
        self.first_h1: str | None = None

    def walk(self, element: Tag) -> None:
        pending: list[PageElement] = []
        for child in element.children:
            if not (isinstance(child, Tag) and child.name in _STRUCTURE):
                pending.append(child)
                continue
            self._flush(pending)
            if child.name in _HEADINGS:
                self._heading(int(child.name[1]), _inline_text([child]))
            elif child.name == "pre":
                self.builder.add(normalize(child.get_text()), self.trail.path)
            elif child.name == "tr":
                cells = (_inline_text([cell]) for cell in child.find_all(["td", "th"], recursive=False))
                self.builder.add(" | ".join(c.replace("\n", " ") for c in cells if c), self.trail.path)
            else:
                self.walk(child)
        self._flush(pending)

    def _flush(self, pending: list[PageElement]) -> None:
        if pending:
            self.builder.add(_inline_text(pending), self.trail.path)
            pending.clear()

    def _heading(self, level: int, text: str) -> None:
        text = collapse_spaces(text)
        if not text:
            return
        self.trail.enter(level, text)
        if level == 1 and self.first_h1 is None:
            self.first_h1 = short_text(text, MAX_TITLE_CHARS)
        self.builder.add(text, self.trail.path, is_heading=True)


def parse(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    # Every tag becomes a Python object of about 1.5 KB: count them before BeautifulSoup builds its tree.
    tags = count_tags(data)
    check_parse_memory("The HTML page", tags, "tags", HTML_BYTES_PER_TAG, len(data) * BYTES_PER_TEXT_BYTE, limits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        # Bytes, so that BeautifulSoup honours <meta charset> (Shift_JIS pages and the like).
        soup = BeautifulSoup(data, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup.find_all(sorted(_DROP)):
        tag.decompose()
    walker = _Walker()
    try:
        walker.walk(soup)
    except RecursionError as exc:
        raise Unprocessable(
            "The HTML is nested too deeply to read (thousands of levels): simplify or re-save the page"
        ) from exc
    return walker.builder.build(title or walker.first_h1, empty_detail=NO_TEXT)
