"""DOCX: paragraphs and table cells in document order; "Title"/"Heading N" styles drive the heading path."""

from __future__ import annotations

import io
import re

import docx
from docx.document import Document
from docx.table import Table
from docx.text.paragraph import Paragraph

from app.core.errors import Unprocessable
from app.ingest.parsers.base import ParsedDocument
from app.ingest.parsers.limits import DEFAULT_LIMITS, ParseLimits, check_zip
from app.ingest.parsers.text import MAX_TITLE_CHARS, NO_TEXT, DocBuilder, HeadingTrail, short_text

CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

_HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)
# "Title" sits above "Heading 1" in Word's outline.
_TITLE_LEVEL = 0


def _heading_level(paragraph: Paragraph) -> int | None:
    style = paragraph.style
    name = (style.name or "") if style is not None else ""
    if name.lower() == "title":
        return _TITLE_LEVEL
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


class _Reader:
    def __init__(self) -> None:
        self.builder = DocBuilder(CONTENT_TYPE)
        self.trail = HeadingTrail()
        self.title_paragraph: str | None = None
        # python-docx resolves a paragraph's style by scanning every style of the document, each time (7 ms a
        # paragraph here: minutes for a long document). Paragraphs name their style by id: resolve each id once.
        self._levels: dict[str | None, int | None] = {}

    def _level(self, paragraph: Paragraph) -> int | None:
        style_id = paragraph._p.style
        if style_id not in self._levels:
            self._levels[style_id] = _heading_level(paragraph)
        return self._levels[style_id]

    def paragraph(self, paragraph: Paragraph) -> None:
        text = paragraph.text
        level = self._level(paragraph)
        if level is None or not text.strip():
            self.builder.add(text, self.trail.path)
            return
        self.trail.enter(level, text)
        if level == _TITLE_LEVEL and self.title_paragraph is None:
            self.title_paragraph = short_text(text, MAX_TITLE_CHARS)
        self.builder.add(text, self.trail.path, is_heading=True)

    def table(self, table: Table) -> None:
        seen: set[object] = set()  # holds the elements, so identity stays meaningful
        for row in table.rows:
            for cell in row.cells:
                # A merged cell is returned once per grid column it spans.
                if cell._tc in seen:
                    continue
                seen.add(cell._tc)
                for item in cell.iter_inner_content():
                    if isinstance(item, Paragraph):
                        self.builder.add(item.text, self.trail.path)
                    else:
                        self.table(item)


def _open(data: bytes) -> Document:
    try:
        return docx.Document(io.BytesIO(data))
    except Exception as exc:
        # python-docx raises PackageNotFoundError, BadZipFile, KeyError, XML errors... all mean "damaged".
        raise Unprocessable(
            f"The file is not a valid Word .docx document or is damaged ({type(exc).__name__}): "
            "open it in Word, save it as .docx again and upload that"
        ) from exc


def parse(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    # python-docx inflates and parses every part it reaches in one go: measure them first, in bounded memory.
    check_zip(io.BytesIO(data), limits)
    document = _open(data)
    reader = _Reader()
    try:
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                reader.paragraph(item)
            else:
                reader.table(item)
        core_title = document.core_properties.title
    except Exception as exc:
        raise Unprocessable(
            f"The Word document's content could not be read ({type(exc).__name__}): "
            "open it in Word, save it as .docx again and upload that"
        ) from exc
    return reader.builder.build(core_title or reader.title_paragraph, empty_detail=NO_TEXT)
