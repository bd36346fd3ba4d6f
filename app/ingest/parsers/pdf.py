"""PDF: pypdf's text layer, page by page; paragraphs split on blank lines (or lines when there are none)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import BinaryIO

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from app.core.errors import AppError, Unprocessable
from app.ingest.parsers.base import ParsedDocument
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


def parse(data: bytes) -> ParsedDocument:
    parts = list(_parts(io.BytesIO(data), pages_per_part=0))
    return parts[0][0]


def parse_stream(payload: Payload) -> Iterator[tuple[ParsedDocument, float]]:
    """The PDF read from its file a few pages at a time, each part with the share of pages read so far."""
    with payload.open() as fh:
        yield from _parts(fh, pages_per_part=PAGES_PER_PART)


def _parts(fh: BinaryIO, *, pages_per_part: int) -> Iterator[tuple[ParsedDocument, float]]:
    """Parts of ``pages_per_part`` pages (0: one part); 422s say what is wrong with the file."""
    builder, emitted = DocBuilder(CONTENT_TYPE), False
    try:
        reader = PdfReader(fh)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise Unprocessable(_ENCRYPTED)
        title, total = _title(reader), len(reader.pages)
        for number, page in enumerate(reader.pages, start=1):
            for paragraph in _paragraphs(page.extract_text() or ""):
                builder.add(paragraph, [], page=number)
            if builder.blocks and (number == total or (pages_per_part and number % pages_per_part == 0)):
                emitted = True
                yield builder.build(title, empty_detail=NO_TEXT_LAYER), number / total
                builder = DocBuilder(CONTENT_TYPE)
    except AppError:
        raise
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
