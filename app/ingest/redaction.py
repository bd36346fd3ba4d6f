"""PII redaction before anything is chunked, embedded or stored (turned on per collection).

Replaces e-mail addresses, phone numbers (Japanese and international forms), payment card numbers (checked
with the Luhn digit) and Japanese individual numbers (My Number, 12 digits checked with their check digit), in
the text and in everything stored beside it: heading paths, titles, file names and metadata values.

Japanese text writes them in full-width forms (ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ, ０９０－１２３４－５６７８), with a
katakana long-vowel mark or an ideographic space for a separator, and phone numbers with spaces or dots
(090 1234 5678, 090.1234.5678, 03(1234)5678). The patterns run on a folded copy of the text, where each such
character is replaced by its ASCII form one for one, so a match's offsets are the original's: the replacement
goes into the original text, and everything outside the matches stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from app.ingest.parsers.base import Block, ParsedDocument

# Full-width ASCII (U+FF01-FF5E) to ASCII; spaces, dashes and look-alikes that separate digits to " " and "-".
_FOLD = str.maketrans(
    {
        **{chr(cp): chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)},
        **dict.fromkeys("\u3000\u00a0\u2002\u2003\u2009\u202f", " "),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70\ufe63\u2500\u2501", "-"),
    }
)
_MASK = "\x00"  # what a found span becomes in the folded copy, so later patterns do not match inside it

# The local part starts where a run of its characters starts and takes the whole run (possessive): otherwise a
# 40,000-letter word without "@" costs seconds, a million letters hours (every start, every length tried).
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
MY_NUMBER = re.compile(r"(?<![\d.])(?<!\d[ .-])(\d{4})[ .-]?(\d{4})[ .-]?(\d{4})(?![ .-]?\d)")
_SEP = r"[ .-]"
PHONE = re.compile(
    r"(?<![\d+.])(?<!\d[ .-])(?:"
    rf"\+\d{{1,3}}{_SEP}?\(?\d{{1,4}}\)?(?:{_SEP}?\d{{2,4}}){{2,3}}"  # +81 3-1234-5678, +1 (415) 555 0100
    rf"|0\d{{1,4}}{_SEP}\d{{1,4}}{_SEP}\d{{3,4}}"  # 03-1234-5678, 090 1234 5678, 090.1234.5678
    r"|0\d{1,4}\(\d{1,4}\)\d{3,4}"  # 03(1234)5678
    r"|\(0\d{1,4}\) ?\d{1,4}[ -]\d{4}"  # (03) 1234-5678
    r"|0[5789]0\d{8}"  # 09012345678
    r")(?![ .-]?\d)"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _my_number_ok(digits: str) -> bool:
    """Check digit of the Japanese individual number (行政手続における特定の個人を識別するための番号)."""
    if len(digits) != 12:
        return False
    body, check = [int(c) for c in digits[:11]], int(digits[11])
    total = sum(p * q for p, q in zip(reversed(body), [n + 1 if n <= 6 else n - 5 for n in range(1, 12)], strict=True))
    remainder = total % 11
    expected = 0 if remainder <= 1 else 11 - remainder
    return expected == check


def _phone_ok(digits: str, found: str) -> bool:
    """A real number's length: 10 or 11 digits at home (0...), 8 to 15 with a country code. Dates, versions and
    amounts with separators have other lengths."""
    return 8 <= len(digits) <= 15 if found.startswith("+") else len(digits) in (10, 11)


@dataclass(frozen=True, slots=True)
class _Kind:
    pattern: re.Pattern[str]
    label: str
    valid: Callable[[str, str], bool] | None = None


_KINDS = (
    _Kind(EMAIL, "[EMAIL]"),
    _Kind(CARD, "[CARD]", lambda digits, _: 13 <= len(digits) <= 19 and _luhn_ok(digits)),
    _Kind(MY_NUMBER, "[MY_NUMBER]", lambda digits, _: _my_number_ok(digits)),
    _Kind(PHONE, "[PHONE]", _phone_ok),
)
_NOT_DIGIT = re.compile(r"\D")


def redact_text(text: str) -> tuple[str, int]:
    """``text`` with every PII span replaced by its label, and how many there were."""
    folded = text.translate(_FOLD)
    assert len(folded) == len(text)  # one for one: offsets in the folded copy are the text's
    spans: list[tuple[int, int, str]] = []
    for kind in _KINDS:
        found = [
            (m.start(), m.end(), kind.label)
            for m in kind.pattern.finditer(folded)
            if kind.valid is None or kind.valid(_NOT_DIGIT.sub("", m.group(0)), m.group(0))
        ]
        if found:
            folded = _masked(folded, found)
            spans += found
    if not spans:
        return text, 0
    parts, position = [], 0
    for start, end, label in sorted(spans):
        parts += [text[position:start], label]
        position = end
    parts.append(text[position:])
    return "".join(parts), len(spans)


def _masked(text: str, spans: list[tuple[int, int, str]]) -> str:
    parts, position = [], 0
    for start, end, _ in spans:
        parts += [text[position:start], _MASK * (end - start)]
        position = end
    parts.append(text[position:])
    return "".join(parts)


def redact_document(doc: ParsedDocument) -> tuple[ParsedDocument, int]:
    """Redact every block, its heading path and the title; the text is rebuilt so that block offsets stay exact.
    The count is of the spans in the text (a heading path repeats a heading the text already has)."""
    parts: list[str] = []
    blocks: list[Block] = []
    headings: dict[str, str] = {}  # a heading path entry is shared by every block of its section

    def heading(entry: str) -> str:
        if entry not in headings:
            headings[entry] = redact_text(entry)[0]
        return headings[entry]

    position = previous_end = total = 0
    for block in doc.blocks:
        gap = doc.text[previous_end : block.start]
        parts.append(gap)
        position += len(gap)
        new_text, n = redact_text(block.text)
        total += n
        path = [heading(entry) for entry in block.heading_path]
        blocks.append(replace(block, text=new_text, start=position, end=position + len(new_text), heading_path=path))
        parts.append(new_text)
        position += len(new_text)
        previous_end = block.end
    parts.append(doc.text[previous_end:])
    title = redact_text(doc.title)[0] if doc.title else doc.title
    return replace(doc, text="".join(parts), blocks=blocks, title=title), total


_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def redact_filename(filename: str | None) -> str | None:
    """A file name with PII replaced in its stem; the extension stays (taro@example.com.pdf → [EMAIL].pdf)."""
    if not filename:
        return filename
    extension = _EXTENSION.search(filename)
    stem, suffix = (filename[: extension.start()], extension.group(0)) if extension else (filename, "")
    return redact_text(stem)[0] + suffix


def redact_value(value: Any) -> Any:
    """Metadata with PII replaced in every string value, at any depth (keys and other values stay)."""
    if isinstance(value, str):
        return redact_text(value)[0]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    return value
