"""Choose a parser by content type: the bytes decide first, then the file name, then the declared type."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import PurePath

from app.core.errors import Unprocessable, UnsupportedMediaType
from app.ingest.parsers import docx, html, markdown, pdf, text
from app.ingest.parsers.base import Block, ParsedDocument
from app.ingest.parsers.limits import DEFAULT_LIMITS, WHOLE_FILE_PARSE, ParseLimits, check_zip, check_zip_directory
from app.ingest.payload import Payload

__all__ = [
    "DEFAULT_LIMITS",
    "SUPPORTED_SUFFIXES",
    "SUPPORTED_TYPES",
    "Block",
    "ParseLimits",
    "ParsedDocument",
    "detect_content_type",
    "parse",
    "parse_parts",
]

TEXT, MARKDOWN, HTML = text.CONTENT_TYPE, markdown.CONTENT_TYPE, html.CONTENT_TYPE
PDF, DOCX = pdf.CONTENT_TYPE, docx.CONTENT_TYPE

_PARSERS: dict[str, Callable[[bytes, ParseLimits], ParsedDocument]] = {
    TEXT: lambda data, _limits: text.parse(data),  # bounded by the upload size: no tree is built
    MARKDOWN: markdown.parse,
    HTML: html.parse,
    PDF: pdf.parse,
    DOCX: docx.parse,
}
SUPPORTED_TYPES = tuple(_PARSERS)
# Parsed whole into a tree: one at a time (limits.WHOLE_FILE_PARSE).
_TREES = {MARKDOWN, HTML, DOCX}

_EXTENSIONS = {
    ".txt": TEXT, ".text": TEXT, ".md": MARKDOWN, ".markdown": MARKDOWN,
    ".html": HTML, ".htm": HTML, ".pdf": PDF, ".docx": DOCX,
}  # fmt: skip
SUPPORTED_SUFFIXES = frozenset(_EXTENSIONS)  # what folder ingest and sources pick up; other files are skipped
_ALIASES = {"text/x-markdown": MARKDOWN, "application/xhtml+xml": HTML, "application/x-pdf": PDF}
_NAMES = {TEXT: "text", MARKDOWN: "Markdown", HTML: "HTML", PDF: "PDF", DOCX: "Word .docx"}
# Formats we recognise by their first bytes only to refuse them with a clear message.
_BINARY_SIGNATURES = {
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
    b"\x7fELF": "an executable", b"\x1f\x8b": "a gzip archive",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive", b"Rar!\x1a\x07": "a RAR archive",
    b"\xd0\xcf\x11\xe0": "a legacy Office file (.doc/.xls/.ppt)", b"%!PS": "a PostScript file",
}  # fmt: skip
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_SNIFF = 8192
# Text files above this size are parsed as a stream of parts (PDFs always are, page by page); the other
# formats' parsers need the whole file.
STREAM_TEXT_ABOVE = 4 << 20
_STREAMED: dict[str, Callable[[Payload, ParseLimits], Iterator[tuple[ParsedDocument, float]]]] = {
    TEXT: lambda payload, _limits: text.parse_stream(payload),
    PDF: pdf.parse_stream,
}


def _supported_list() -> str:
    return ", ".join(SUPPORTED_TYPES)


def _unsupported(reason: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"{reason}: not a supported document type. Supported types: {_supported_list()} "
        "(.txt, .md, .html, .pdf, .docx)",
        extra={"supported_types": list(SUPPORTED_TYPES)},
    )


def _base_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def _claimed_type(filename: str | None, declared: str | None) -> str | None:
    """What the name, else the declared type, says the file is (only when that is a type we support)."""
    if filename:
        by_name = _EXTENSIONS.get(PurePath(filename).suffix.lower())
        if by_name:
            return by_name
    by_declared = _base_type(declared)
    return by_declared if by_declared in _PARSERS else None


def _is_docx_zip(payload: Payload) -> bool | None:
    """True/False for a readable zip with/without word/document.xml; None when the zip is damaged."""
    try:
        with payload.open() as fh:
            check_zip_directory(fh)  # before zipfile makes an object of every entry
            fh.seek(0)
            with zipfile.ZipFile(fh) as archive:
                return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _binary_kind(data: bytes) -> str | None:
    for signature, kind in _BINARY_SIGNATURES.items():
        if data.startswith(signature):
            return kind
    if b"\x00" in data[:_SNIFF] and not text.has_bom(data):
        return "a binary file"
    return None


def detect_content_type(
    filename: str | None, content: bytes | Payload, declared: str | None = None, limits: ParseLimits = DEFAULT_LIMITS
) -> str:
    """The content type to parse ``content`` as; UnsupportedMediaType or Unprocessable when there is none, and
    PayloadTooLarge for a .docx whose directory already declares more than ``limits`` allow.

    Only the first bytes are read (and a ZIP's directory), so a large upload is not loaded to decide."""
    payload = content if isinstance(content, Payload) else Payload.of_bytes(content)
    data, partial = payload.head, payload.size > len(payload.head)
    claimed = _claimed_type(filename, declared)
    label = f"'{filename}'" if filename else "The file"
    if payload.is_blank():
        return claimed or TEXT  # parse() explains that the file is empty
    # Readers accept the header anywhere in the first 1024 bytes; we do when the name says PDF too.
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:5] == b"%PDF-" or (claimed == PDF and b"%PDF-" in data[:1024]):
        return PDF
    if data.startswith(_ZIP_SIGNATURES):
        is_docx = _is_docx_zip(payload)
        if is_docx or (is_docx is None and claimed == DOCX):
            with payload.open() as fh:  # a bomb with honest headers is refused at upload, before it is queued
                check_zip(fh, limits, declared_only=True)
            return DOCX  # a damaged .docx gets a 422 from parse(), not a 415
        raise _unsupported(f"{label} is a ZIP archive without word/document.xml, so not a .docx")
    kind = _binary_kind(data)
    if kind:
        raise _unsupported(f"{label} is {kind}")
    if claimed in (TEXT, MARKDOWN, HTML):
        return claimed  # parse() says so if it cannot be decoded
    is_text = text.text_encoding(data, partial=partial) is not None
    if claimed in (PDF, DOCX):
        found = "text" if is_text else "something else"
        raise Unprocessable(
            f"{label} is not a valid {_NAMES[claimed]} file: its content is {found}. "
            f"Upload the original {_NAMES[claimed]} file, or give a text file a .txt name"
        )
    if not is_text:
        raise _unsupported(f"{label} is neither a known format nor text in a detectable encoding")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return HTML
    return TEXT


def parse(data: bytes, content_type: str, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """Parse ``data`` as ``content_type``; Unprocessable (422) explains what is wrong and what to do,
    PayloadTooLarge (413) which of ``limits`` the file passes."""
    base = _base_type(content_type)
    parser = _PARSERS.get(base or "")
    if parser is None:
        raise _unsupported(f"'{content_type}'")
    if not data.strip():
        raise Unprocessable("The file is empty: upload a file with some text in it")
    if base in _TREES:
        with WHOLE_FILE_PARSE:
            return parser(data, limits)
    return parser(data, limits)


def parse_parts(
    payload: Payload, content_type: str, limits: ParseLimits = DEFAULT_LIMITS
) -> Iterator[tuple[ParsedDocument, float]]:
    """The document as consecutive parts, each with the share of the file read so far (for progress).

    Small files and formats that need the whole file come as one part; large text files and PDFs as several,
    so memory stays bounded whatever the file's size. Part offsets start at 0: joined with a blank line, the
    parts' texts make the document's text."""
    base = _base_type(content_type) or ""
    streamed = _STREAMED.get(base)
    if streamed is not None and (base == PDF or payload.size > STREAM_TEXT_ABOVE):
        if payload.is_blank():
            raise Unprocessable("The file is empty: upload a file with some text in it")
        yield from streamed(payload, limits)
        return
    yield parse(payload.read(), content_type, limits), 1.0
