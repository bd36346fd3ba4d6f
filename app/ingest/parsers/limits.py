"""What one upload may cost the parsers, checked before the expensive step.

An upload's size is capped as it arrives (KS_MAX_UPLOAD_MB), but what a parser builds from it is not: a 480 KB
.docx can inflate to 300 MB of XML and 50 million elements, a 50 MB HTML page of tiny tags becomes millions of
Python objects. Each guard here runs on the raw bytes, in bounded memory, before a parser sees them, and refuses
with 413 and a detail that says which limit and what to do.
"""

from __future__ import annotations

import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from app.core.errors import PayloadTooLarge, Unprocessable

_MIB = 1 << 20
_BLOCK = 1 << 20  # inflate and scan a MiB at a time
# Below this many inflated bytes a member's compression ratio is not judged: small XML parts compress very well.
RATIO_FLOOR = _MIB


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Per-upload bounds, from the settings KS_MAX_PARSE_MB, KS_MAX_INFLATED_MB, KS_MAX_COMPRESSION_RATIO,
    KS_MAX_PDF_PAGES and KS_MAX_PDF_STREAM_MB (app.core.config says what each means)."""

    parse_bytes: int = 512 * _MIB
    inflated_bytes: int = 128 * _MIB
    compression_ratio: int = 100
    pdf_pages: int = 10_000
    pdf_stream_bytes: int = 16 * _MIB


DEFAULT_LIMITS = ParseLimits()


def too_large(what: str, limit: str, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what}; the limit is {limit} ({setting}). Split the document into smaller files and upload those, "
        f"or ask the operator to raise {setting}"
    )


def _mib(n: int) -> str:
    return f"{n / _MIB:,.0f} MiB"


# --- whole-file parses --------------------------------------------------------------------------------------
# DOCX, HTML and Markdown are parsed whole, into a tree. One such parse runs at a time, so the memory they take
# is one parse's (at most ``parse_bytes``) however many uploads arrive at once; text files and PDFs are read a
# part at a time and do not wait for it.
WHOLE_FILE_PARSE = threading.Lock()

# What a parser's tree costs, measured on this code as peak RSS over 50,000-300,000 elements (Python 3.11):
# python-docx (lxml) 250-330 B per XML element; BeautifulSoup 1.2-1.5 KB per HTML tag; markdown-it-py plus our
# block pass 2.1-2.4 KB per line. Each file's text is also held a few times over (the parser's strings, the
# blocks, the joined text). Rounded up, so that the estimate is not below what the parse takes.
DOCX_BYTES_PER_ELEMENT = 350
HTML_BYTES_PER_TAG = 1_600
MARKDOWN_BYTES_PER_LINE = 2_500
# A .docx's parts are held once as bytes, their text a few times; a text file's bytes about four times.
DOCX_BYTES_PER_INFLATED_BYTE = 2
BYTES_PER_TEXT_BYTE = 4


def check_parse_memory(what: str, count: int, unit: str, per_unit: int, held_bytes: int, limits: ParseLimits) -> None:
    """413 when a whole-file parse of ``count`` ``unit``s, holding ``held_bytes`` besides, would pass
    ``parse_bytes``."""
    estimate = count * per_unit + held_bytes
    if estimate > limits.parse_bytes:
        raise too_large(
            f"{what} has {count:,} {unit}; parsing it would take about {_mib(estimate)} of memory",
            _mib(limits.parse_bytes),
            "KS_MAX_PARSE_MB",
        )


# --- element counts -----------------------------------------------------------------------------------------
class TagCounter:
    """Counts markup nodes (start tags, empty tags, comments, processing instructions, doctypes) in a byte stream
    fed in pieces: every ``<`` that does not open an end tag. A ``<`` in a comment, a CDATA section or HTML text
    is counted too, so the count is an upper bound, never an underestimate."""

    def __init__(self) -> None:
        self.count = 0
        self._carry = b""

    def feed(self, block: bytes) -> int:
        data = self._carry + block
        # A trailing "<" may open an end tag whose "/" is in the next block: judge it then.
        self._carry = data[-1:] if data.endswith(b"<") else b""
        body = data[:-1] if self._carry else data
        self.count += body.count(b"<") - body.count(b"</")
        return self.count

    def finish(self) -> int:
        self.count += len(self._carry)
        self._carry = b""
        return self.count


def count_tags(data: bytes) -> int:
    return data.count(b"<") - data.count(b"</")


# --- ZIP containers (DOCX) ----------------------------------------------------------------------------------
# A Word document has tens of parts, a few thousand with many images. zipfile builds an object for every entry of
# the central directory before anything can be checked (480,000 empty entries fit in 45 MB: 270 MB of objects
# and minutes of CPU), so the directory's size is read from its end record first.
MAX_ZIP_PARTS = 10_000
MAX_ZIP_DIRECTORY = 4 * _MIB
_END = struct.Struct("<4s4xHHII")  # signature, entries on this disk, total entries, directory size, its offset
_END64_LOCATOR = struct.Struct("<4s4xQ4x")  # signature, offset of the zip64 end record
_END64 = struct.Struct("<4s28xQQQ")  # signature, total entries, directory size, its offset


def check_zip_directory(fh: BinaryIO) -> None:
    """413 for a ZIP whose central directory declares more parts, or more bytes, than a document has."""
    fh.seek(0, 2)
    size = fh.tell()
    tail_at = max(0, size - (_END.size + 0xFFFF))  # the end record, then a comment of up to 64 KiB
    fh.seek(tail_at)
    tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _END.size > len(tail):
        return  # not a ZIP zipfile can open either: the parser says so
    _, _, entries, directory, _ = _END.unpack_from(tail, at)
    locator = at - _END64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":  # zip64: the real counts are there
        fh.seek(_END64_LOCATOR.unpack_from(tail, locator)[1])
        record = fh.read(_END64.size)
        if len(record) == _END64.size and record[:4] == b"PK\x06\x06":
            _, entries, directory, _ = _END64.unpack(record)
    if entries > MAX_ZIP_PARTS or directory > MAX_ZIP_DIRECTORY:
        raise PayloadTooLarge(
            f"The file is a ZIP of {entries:,} parts ({directory:,} bytes of directory): a Word document has at "
            f"most {MAX_ZIP_PARTS:,}. Upload the document itself, saved again as .docx"
        )


def check_zip(fh: BinaryIO, limits: ParseLimits, *, declared_only: bool = False) -> None:
    """Refuse a ZIP whose members inflate past ``limits`` before any reader inflates one whole.

    First the central directory's declared sizes and ratios (cheap); then, unless ``declared_only``, every member
    is inflated from its raw bytes as a stream and its real size and XML elements are counted, since headers can
    lie (zipfile stops at the declared size, but only after inflating the whole member in one call)."""
    check_zip_directory(fh)
    fh.seek(0)
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not readable as a ZIP: the parser explains that it is damaged
    with archive:
        infos = archive.infolist()
        declared = 0
        for info in infos:
            declared += info.file_size
            _check_ratio(info.filename, info.file_size, info.compress_size, limits)
        if declared > limits.inflated_bytes:
            raise _inflates(f"declares {_mib(declared)}", limits)
        if declared_only:
            return
        total = elements = 0

        def check_memory() -> None:
            check_parse_memory(
                "The Word document (read so far)", elements + (counter.count if counter else 0), "XML elements",
                DOCX_BYTES_PER_ELEMENT, total * DOCX_BYTES_PER_INFLATED_BYTE, limits,
            )  # fmt: skip

        for info in infos:
            counter: TagCounter | None = None
            size = 0
            for block in _inflate_member(fh, info):
                if size == 0 and _may_be_xml(block):
                    counter = TagCounter()
                size += len(block)
                total += len(block)
                if total > limits.inflated_bytes:
                    raise _inflates(f"inflates to more than {_mib(limits.inflated_bytes)}", limits)
                _check_ratio(info.filename, size, info.compress_size, limits)
                if counter is not None:
                    counter.feed(block)
                check_memory()
            elements += counter.finish() if counter is not None else 0


def _may_be_xml(first: bytes) -> bool:
    """Parts are parsed by their content type, not their name: count the elements of any part that is text
    (no NUL byte: images and fonts have them) or UTF-16 (which XML may be, NULs and all)."""
    return b"\x00" not in first[:4096] or first.startswith((b"\xff\xfe", b"\xfe\xff"))


def _inflates(how: str, limits: ParseLimits) -> PayloadTooLarge:
    return too_large(f"The file {how} once decompressed", _mib(limits.inflated_bytes), "KS_MAX_INFLATED_MB")


def _check_ratio(name: str, inflated: int, compressed: int, limits: ParseLimits) -> None:
    if inflated > RATIO_FLOOR and inflated > limits.compression_ratio * max(compressed, 1):
        raise too_large(
            f"Its part {name} is compressed {inflated // max(compressed, 1):,} to 1 (a decompression bomb?)",
            f"{limits.compression_ratio} to 1",
            "KS_MAX_COMPRESSION_RATIO",
        )


_LOCAL_HEADER = struct.Struct("<4s22xHH")


def _inflate_member(fh: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's real content, a MiB at a time, from its raw compressed bytes (not its declared size)."""
    fh.seek(info.header_offset)
    signature, name_len, extra_len = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise _damaged(info.filename)
    fh.seek(name_len + extra_len, 1)
    left = info.compress_size
    if info.compress_type == zipfile.ZIP_STORED:
        while left > 0 and (block := fh.read(min(_BLOCK, left))):
            left -= len(block)
            yield block
        return
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise Unprocessable(
            f"The file's part {info.filename} uses a compression Word does not write ({info.compress_type}): "
            "open it in Word, save it as .docx again and upload that"
        )
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        while not inflater.eof:
            data = inflater.unconsumed_tail
            if not data and left > 0:
                data = fh.read(min(64 * 1024, left))
                left -= len(data)
            block = inflater.decompress(data, _BLOCK)
            if block:
                yield block
            elif not data:
                return  # the input ran out before the end of the stream: the parser says it is damaged
    except zlib.error as exc:
        raise _damaged(info.filename) from exc


def _damaged(name: str) -> Unprocessable:
    return Unprocessable(
        f"The file is not a valid Word .docx document or is damaged (its part {name} cannot be read): "
        "open it in Word, save it as .docx again and upload that"
    )
