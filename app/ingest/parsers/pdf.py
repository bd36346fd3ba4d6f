"""PDF: pypdf's text layer, page by page; paragraphs split on blank lines (or lines when there are none)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import BinaryIO

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, LimitReachedError

from app.core.errors import AppError, PayloadTooLarge, Unprocessable
from app.ingest.parsers.base import ParsedDocument
from app.ingest.parsers.limits import DEFAULT_LIMITS, ParseLimits
from app.ingest.parsers.pdf_budget import ContentBudget, check_pages, declared_pages, drop_cached, pypdf_limits
from app.ingest.parsers.text import DocBuilder, normalize
from app.ingest.payload import Payload

CONTENT_TYPE = "application/pdf"

NO_TEXT_LAYER = "The PDF has no text layer (scanned image?): run OCR first, or export it again with selectable text"
_ENCRYPTED = "The PDF is password-protected: remove the password (export it without one) and upload again"
# Placeholders some producers write instead of a real title.
_NO_TITLE = {"untitled", "unknown", "microsoft word"}
_BLANK_LINES = re.compile(r"\n{2,}")


def _paragraphs(page_text: str) -> list[str]:
    text = normalize(page_text).strip("\n")
    parts = _BLANK_LINES.split(text)
    return parts if len(parts) > 1 else text.split("\n")


def _title(reader: PdfReader) -> str | None:
    title = reader.metadata.title if reader.metadata else None
    if not isinstance(title, str) or title.strip().lower() in _NO_TITLE:
        return None
    return title


# A streamed PDF comes in parts of this many pages (pages are chunked independently, so nothing changes).
PAGES_PER_PART = 16


def parse(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    parts = list(_parts(io.BytesIO(data), pages_per_part=0, limits=limits))
    return parts[0][0]


def parse_stream(payload: Payload, limits: ParseLimits = DEFAULT_LIMITS) -> Iterator[tuple[ParsedDocument, float]]:
    """The PDF read from its file a few pages at a time, each part with the share of pages read so far."""
    with payload.open() as fh:
        yield from _parts(fh, pages_per_part=PAGES_PER_PART, limits=limits)


def _open(fh: BinaryIO, limits: ParseLimits) -> tuple[PdfReader, int]:
    """The reader and its page count, once the declared and the real count are within the limit."""
    reader = PdfReader(fh)
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise Unprocessable(_ENCRYPTED)
    declared = declared_pages(reader)
    if declared is not None:
        check_pages(declared, limits)  # before the page tree is walked
    total = len(reader.pages)
    check_pages(total, limits)
    # Add up every page's content before reading any text: inflating is quick, pypdf's parsing is not, so a file
    # over the budget is refused in a second instead of after minutes of parsing its first pages.
    budget = ContentBudget(limits)
    for number, page in enumerate(reader.pages, start=1):
        drop_cached(budget.charge_page(page, number))
    return reader, total


def _parts(fh: BinaryIO, *, pages_per_part: int, limits: ParseLimits) -> Iterator[tuple[ParsedDocument, float]]:
    """Parts of ``pages_per_part`` pages (0: one part); 422s say what is wrong with the file, 413s which limit it
    passes. pypdf's limits are set around each step, never across a ``yield`` (the caller's code runs there)."""
    builder, emitted = DocBuilder(CONTENT_TYPE), False
    budget = ContentBudget(limits)
    try:
        with pypdf_limits(limits):
            reader, total = _open(fh, limits)
            title = _title(reader)
        for number in range(1, total + 1):
            with pypdf_limits(limits):
                page = reader.pages[number - 1]
                inflated = budget.charge_page(page, number)
                try:
                    page_text = page.extract_text() or ""
                finally:
                    drop_cached(inflated)
            for paragraph in _paragraphs(page_text):
                builder.add(paragraph, [], page=number)
            if builder.blocks and (number == total or (pages_per_part and number % pages_per_part == 0)):
                emitted = True
                yield builder.build(title, empty_detail=NO_TEXT_LAYER), number / total
                builder = DocBuilder(CONTENT_TYPE)
    except AppError:
        raise
    except LimitReachedError as exc:
        raise PayloadTooLarge(
            f"The PDF passes one of the reader's safety limits ({exc}): a stream may inflate to "
            f"{limits.pdf_stream_bytes >> 20} MiB (KS_MAX_PDF_STREAM_MB) and a file may have {limits.pdf_pages:,} "
            "pages (KS_MAX_PDF_PAGES). Split the document into smaller files and upload those"
        ) from exc
    except DependencyError as exc:
        raise Unprocessable(
            f"The PDF is encrypted with a cipher this server cannot open ({exc}): "
            "save an unencrypted copy and upload that"
        ) from exc
    except Exception as exc:
        # pypdf signals malformed files with many exception types (PdfReadError, KeyError, ValueError,
        # RecursionError...); for an upload they all mean the same thing.
        raise Unprocessable(
            f"The file is not a valid PDF or is damaged ({type(exc).__name__}: {exc}): "
            "re-export or re-download it and upload again"
        ) from exc
    if not emitted:
        raise Unprocessable(NO_TEXT_LAYER)
