"""PII redaction (app/ingest/redaction.py): the forms Japanese text writes, nothing else, and offsets that stay
exact."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.ingest.parsers import parse
from app.ingest.redaction import redact_document, redact_filename, redact_text, redact_value

FOUND = {
    "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ": "[EMAIL]",
    "taro.yamada+hr@mail.example.co.jp": "[EMAIL]",
    "０９０－１２３４－５６７８": "[PHONE]",
    "090-1234-5678": "[PHONE]",
    "090 1234 5678": "[PHONE]",
    "090.1234.5678": "[PHONE]",
    "090ー1234ー5678": "[PHONE]",  # a katakana long-vowel mark for a dash
    "０９０　１２３４　５６７８": "[PHONE]",  # ideographic spaces
    "03(1234)5678": "[PHONE]",
    "（０３）１２３４－５６７８": "[PHONE]",
    "0120 123 456": "[PHONE]",
    "09012345678": "[PHONE]",
    "+81 90 1234 5678": "[PHONE]",
    "+81.90.1234.5678": "[PHONE]",
    "4111 1111 1111 1111": "[CARD]",
    "４１１１－１１１１－１１１１－１１１１": "[CARD]",
    "1234 5678 9018": "[MY_NUMBER]",
    "１２３４５６７８９０１８": "[MY_NUMBER]",
}
KEPT = [
    "2024-01-15",
    "2024.01.15",
    "01.15.2024",
    "2024年01月15日",
    "１，２３４，５６７円",
    "Version 10.2.3",
    "〒060-0001",
    "order 0123456",
    "page 12 of 345",
    "10:30-12:00",
    "0.5-1.0 mg",
    "1234 5678 9012",  # twelve digits, but not a valid My Number
    "4111 1111 1111 1112",  # sixteen digits, but not a valid card number
    "03-1234-567890",  # too many digits for a phone number
    "090 1234 5678 9",  # part of a longer number
    "tel. 090",
    "user@localhost",
]


@pytest.mark.parametrize("pii", FOUND)
def test_each_form_is_found_inside_japanese_and_english_text(pii: str):
    for before, after in (("連絡先は", "までお願いします。"), ("Call ", " today.")):
        text, n = redact_text(f"{before}{pii}{after}")
        assert (text, n) == (f"{before}{FOUND[pii]}{after}", 1)


@pytest.mark.parametrize("ordinary", KEPT)
def test_ordinary_numbers_dates_and_amounts_are_kept(ordinary: str):
    assert redact_text(f"記録: {ordinary} です") == (f"記録: {ordinary} です", 0)


def test_blocks_keep_exact_offsets_and_heading_paths_are_redacted():
    source = (
        "# 連絡先 ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ\n\n"
        "担当: ０９０－１２３４－５６７８ (平日)\n\n"
        "## 予備 090.1234.5678\n\n"
        "料金は 2024.01.15 から 1,234 円。\n"
    )
    doc, n = redact_document(parse(source.encode(), "text/markdown"))
    assert n == 3  # the two headings and the paragraph; heading paths repeat the headings
    for block in doc.blocks:
        assert doc.text[block.start : block.end] == block.text
        for entry in block.heading_path:
            assert "@" not in entry.translate({0xFF20: "@"}) and "1234" not in entry
    assert doc.blocks[-1].heading_path == ["連絡先 [EMAIL]", "予備 [PHONE]"]
    assert doc.blocks[-1].text == "料金は 2024.01.15 から 1,234 円。"
    assert doc.title == "連絡先 [EMAIL]"


def test_file_names_keep_their_extension_and_metadata_its_shape():
    assert redact_filename("taro@example.com.pdf") == "[EMAIL].pdf"
    assert redact_filename("議事録_090-1234-5678.docx") == "議事録_[PHONE].docx"
    assert redact_filename("report-2024.01.15.md") == "report-2024.01.15.md"
    assert redact_filename(None) is None
    metadata = {
        "owner": "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        "tags": ["hr", "tel 090 1234 5678"],
        "year": 2026,
        "n": {"x": "03(1234)5678"},
    }
    assert redact_value(metadata) == {
        "owner": "[EMAIL]",
        "tags": ["hr", "tel [PHONE]"],
        "year": 2026,
        "n": {"x": "[PHONE]"},
    }


def test_a_long_word_without_an_at_sign_takes_linear_time():
    # Before, the e-mail pattern tried every start and every length: 40,000 letters took 7.7 s, a million hours.
    code = "from app.ingest.redaction import redact_text; print(redact_text('a' * 1_000_000 + ' b@c.de')[1])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "1", run.stderr
