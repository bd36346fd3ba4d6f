"""PII redaction before anything is chunked, embedded or stored (turned on per collection).

Replaces e-mail addresses, phone numbers (Japanese and international forms), payment card numbers (checked
with the Luhn digit) and Japanese individual numbers (My Number, 12 digits checked with their check digit).
"""

from __future__ import annotations

import re
from dataclasses import replace

from app.ingest.parsers.base import Block, ParsedDocument

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
MY_NUMBER = re.compile(r"(?<!\d)(?<!\d[ -])(\d{4})[ -]?(\d{4})[ -]?(\d{4})(?![ -]?\d)")
PHONE = re.compile(
    r"(?<![\d+])(?:"
    r"\+\d{1,3}[ -]?\(?\d{1,4}\)?(?:[ -]?\d{2,4}){2,3}"  # +81 3-1234-5678, +1 (415) 555 0100
    r"|0\d{1,4}-\d{1,4}-\d{3,4}"  # 03-1234-5678, 090-1234-5678
    r"|\(0\d{1,4}\)\s?\d{1,4}-\d{4}"  # (03) 1234-5678
    r"|0[5789]0\d{8}"  # 09012345678
    r")(?!\d)"
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
    body, check = [int(c) for c in digits[:11]], int(digits[11])
    total = sum(p * q for p, q in zip(reversed(body), [n + 1 if n <= 6 else n - 5 for n in range(1, 12)], strict=True))
    remainder = total % 11
    expected = 0 if remainder <= 1 else 11 - remainder
    return expected == check


def redact_text(text: str) -> tuple[str, int]:
    count = 0

    def sub(pattern: re.Pattern[str], label: str, valid=None) -> None:  # type: ignore[no-untyped-def]
        nonlocal text, count

        def repl(m: re.Match[str]) -> str:
            nonlocal count
            digits = re.sub(r"\D", "", m.group(0))
            if valid is not None and not valid(digits):
                return m.group(0)
            count += 1
            return label

        text = pattern.sub(repl, text)

    sub(EMAIL, "[EMAIL]")
    sub(CARD, "[CARD]", lambda d: 13 <= len(d) <= 19 and _luhn_ok(d))
    sub(MY_NUMBER, "[MY_NUMBER]", lambda d: len(d) == 12 and _my_number_ok(d))
    sub(PHONE, "[PHONE]")
    return text, count


def redact_document(doc: ParsedDocument) -> tuple[ParsedDocument, int]:
    """Redact every block and rebuild the text so that block offsets stay exact."""
    parts: list[str] = []
    blocks: list[Block] = []
    position = previous_end = total = 0
    for block in doc.blocks:
        gap = doc.text[previous_end : block.start]
        parts.append(gap)
        position += len(gap)
        new_text, n = redact_text(block.text)
        total += n
        blocks.append(replace(block, text=new_text, start=position, end=position + len(new_text)))
        parts.append(new_text)
        position += len(new_text)
        previous_end = block.end
    parts.append(doc.text[previous_end:])
    title = redact_text(doc.title)[0] if doc.title else doc.title
    return replace(doc, text="".join(parts), blocks=blocks, title=title), total
