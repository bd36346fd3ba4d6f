from __future__ import annotations

import pytest

from app.core.errors import Unprocessable, UnsupportedMediaType
from app.ingest.parsers import SUPPORTED_TYPES, Block, ParsedDocument, detect_content_type, parse
from tests.unit.fixtures_docs import (
    HTML_DOC,
    JAPANESE_LINE,
    MARKDOWN_DOC,
    PNG_HEADER,
    docx_bytes,
    image_only_pdf_bytes,
    pdf_bytes,
    random_bytes,
    zip_bytes,
)

TEXT, MD, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TWO_PAGE_PDF = pdf_bytes(
    [["Quarterly results were strong.", "Revenue grew in every region."], [JAPANESE_LINE]],
    title="Quarterly Report",
)


def load(filename: str | None, data: bytes, declared: str | None = None) -> ParsedDocument:
    return parse(data, detect_content_type(filename, data, declared))


def by_text(doc: ParsedDocument, text: str) -> Block:
    return next(b for b in doc.blocks if b.text == text)


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "data", "declared", "expected"),
    [
        ("report.bin", TWO_PAGE_PDF, "application/octet-stream", PDF),  # magic bytes beat the name
        ("notes.txt", docx_bytes(), None, DOCX),
        (None, docx_bytes(), None, DOCX),
        ("README.md", b"# Title\n\nBody", "text/plain", MD),  # the extension beats the declared type
        ("page.HTM", b"<p>hi</p>", None, HTML),
        (None, b"# Title\n\nBody", "text/markdown; charset=utf-8", MD),
        ("upload", b"just words", "application/octet-stream", TEXT),
        (None, "シフトJISで書かれた日本語の文書です。東京都".encode("shift_jis"), None, TEXT),
        (None, b"<!DOCTYPE html><html><body><p>x</p></body></html>", None, HTML),
        (None, b"MZ Holdings annual report", None, TEXT),  # not mistaken for an executable
        ("scan.pdf", b"\r\n\x00junk" + TWO_PAGE_PDF, None, PDF),  # header within the first 1024 bytes
    ],
)
def test_detects_content_type(filename: str | None, data: bytes, declared: str | None, expected: str) -> None:
    assert detect_content_type(filename, data, declared) == expected


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("photo.png", PNG_HEADER + random_bytes(200)),
        (None, PNG_HEADER),
        ("archive.zip", zip_bytes({"a.txt": b"hello", "b.bin": random_bytes(50)})),
        ("renamed.docx", zip_bytes({"xl/workbook.xml": b"<workbook/>"})),  # an .xlsx in disguise
        ("program", b"\x7fELF\x02\x01\x01" + random_bytes(100)),
        (None, random_bytes(2000)),
        ("data.txt", random_bytes(2000)),
    ],
)
def test_refuses_unsupported_files_listing_supported_types(filename: str | None, data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        detect_content_type(filename, data)
    assert caught.value.status == 415
    for content_type in SUPPORTED_TYPES:
        assert content_type in caught.value.detail


@pytest.mark.parametrize(
    ("filename", "declared"), [("invoice.pdf", None), (None, "application/pdf"), ("x.PDF", "text/plain")]
)
def test_text_claiming_to_be_a_pdf_is_refused_as_invalid_pdf(filename: str | None, declared: str | None) -> None:
    with pytest.raises(Unprocessable) as caught:
        detect_content_type(filename, b"Dear customer,\nthis is a plain letter.\n", declared)
    assert caught.value.status == 422
    assert "not a valid PDF" in caught.value.detail


def test_parse_refuses_an_unknown_content_type() -> None:
    with pytest.raises(UnsupportedMediaType):
        parse(b"hello", "image/png")


# --- each format --------------------------------------------------------------------------------


def test_markdown_headings_drive_heading_path() -> None:
    doc = load("guide.md", MARKDOWN_DOC.encode())
    assert doc.title == "Install Guide"
    headings = [(b.text, b.heading_path) for b in doc.blocks if b.is_heading]
    assert headings == [
        ("Install Guide", ["Install Guide"]),  # setext
        ("Requirements", ["Install Guide", "Requirements"]),
        ("Steps", ["Install Guide", "Steps"]),
        ("Download", ["Install Guide", "Steps", "Download"]),
        ("付録", ["付録"]),  # a new level-1 heading closes every open one
    ]
    assert by_text(doc, "- Python 3.11").heading_path == ["Install Guide", "Requirements"]
    assert by_text(doc, "- A database").heading_path == ["Install Guide", "Requirements"]
    assert by_text(doc, "```bash\nks serve --port 8000\n```").heading_path[-1] == "Download"
    assert by_text(doc, "This guide explains the installation.\nIt has two lines.").heading_path == ["Install Guide"]
    table = next(b for b in doc.blocks if b.text.startswith("| Option"))
    assert "| port   | 8000    |" in table.text


def test_markdown_front_matter_is_not_a_heading() -> None:
    doc = load("post.md", b"---\ntitle: Release notes\ndate: 2024-01-01\n---\nBody text.\n")
    assert doc.title == "Release notes"
    assert [b.text for b in doc.blocks] == ["Body text."]


def test_html_keeps_visible_text_by_block_and_drops_chrome() -> None:
    doc = load("handbook.html", HTML_DOC.encode())
    assert doc.title == "Company Handbook"
    for hidden in ("Home", "alert", "color: red"):
        assert hidden not in doc.text
    assert by_text(doc, "Welcome to the company handbook.").heading_path == ["Handbook"]
    assert by_text(doc, "Direct text in a div.").heading_path == ["Handbook"]
    assert by_text(doc, "Nested paragraph.").heading_path == ["Handbook"]
    assert by_text(doc, "Annual leave is 25 days.").heading_path == ["Handbook", "Leave"]
    assert by_text(doc, "Annual | 25").heading_path == ["Handbook", "Leave"]
    assert by_text(doc, "東京オフィスの休暇は２０日です。").heading_path == ["Handbook", "Leave", "Japan office"]
    assert by_text(doc, "Keep every receipt.").heading_path == ["Handbook", "Expenses"]


def test_html_title_falls_back_to_first_h1_and_br_breaks_lines() -> None:
    doc = load(None, b"<html><body><h1>Only  heading</h1><p>one<br>two</p></body></html>")
    assert doc.title == "Only heading"
    assert by_text(doc, "one\ntwo").heading_path == ["Only heading"]


def test_pdf_blocks_carry_page_numbers_and_japanese_text_is_extracted() -> None:
    doc = load("report.pdf", TWO_PAGE_PDF)
    assert doc.title == "Quarterly Report"
    assert by_text(doc, "Quarterly results were strong.").page == 1
    assert by_text(doc, "Revenue grew in every region.").page == 1
    # pypdf reads reportlab's HeiseiMin-W3 CID font back to the same characters, full-width included.
    assert by_text(doc, JAPANESE_LINE).page == 2
    assert all(b.heading_path == [] for b in doc.blocks)


def test_docx_styles_drive_heading_path_and_table_cells_become_blocks() -> None:
    doc = load("handbook.docx", docx_bytes())
    assert doc.title == "Employee Handbook"
    assert by_text(doc, "Read this first.").heading_path == ["Employee Handbook"]
    assert by_text(doc, "Everyone gets health insurance.").heading_path == ["Employee Handbook", "Benefits"]
    leave = ["Employee Handbook", "Benefits", "Leave"]
    assert by_text(doc, "Leave").is_heading
    assert by_text(doc, "Annual leave is 25 days.").heading_path == leave
    assert [b.text for b in doc.blocks if b.heading_path == leave and not b.is_heading][1:] == [
        "Type", "Days", "Annual", "25", "Unused days expire in March.",  # merged cell once
    ]  # fmt: skip
    assert by_text(doc, JAPANESE_LINE).heading_path == ["Employee Handbook", "Travel"]


def test_docx_title_prefers_core_properties() -> None:
    assert load("h.docx", docx_bytes(core_title="HR Handbook 2024")).title == "HR Handbook 2024"


def test_plain_text_paragraphs_split_on_blank_lines() -> None:
    doc = load("notes.txt", b"First para\r\nstill first.   \r\n\r\n\r\nSecond para.\n")
    assert [b.text for b in doc.blocks] == ["First para\nstill first.", "Second para."]
    assert doc.title is None
    assert all(not b.is_heading and b.heading_path == [] for b in doc.blocks)


def test_shift_jis_text_is_decoded() -> None:
    text = "シフトJISで書かれた日本語の文書です。東京都の資料。"
    doc = load(None, text.encode("shift_jis"))
    assert doc.text == text


# --- properties every format must keep ----------------------------------------------------------

ALL_FORMATS = [
    ("guide.md", MARKDOWN_DOC.encode()),
    ("handbook.html", HTML_DOC.encode()),
    ("report.pdf", TWO_PAGE_PDF),
    ("handbook.docx", docx_bytes()),
    ("notes.txt", f"Intro line.\r\n\r\n{JAPANESE_LINE}\r\n\r\nEnd.".encode()),
]


@pytest.mark.parametrize(("filename", "data"), ALL_FORMATS)
def test_block_offsets_point_at_block_text(filename: str, data: bytes) -> None:
    doc = load(filename, data)
    assert doc.blocks
    for block in doc.blocks:
        assert doc.text[block.start : block.end] == block.text
        assert block.text.strip()
    assert doc.text == "\n\n".join(b.text for b in doc.blocks)
    assert "\r" not in doc.text


@pytest.mark.parametrize(("filename", "data"), ALL_FORMATS)
def test_japanese_full_width_text_survives_unchanged(filename: str, data: bytes) -> None:
    doc = load(filename, data)
    expected = "日本語の段落です。全角ＡＢＣ１２３はそのまま残ります。" if filename.endswith(".md") else None
    expected = expected or ("東京オフィスの休暇は２０日です。" if filename.endswith(".html") else JAPANESE_LINE)
    assert expected in doc.text  # no NFKC: ＡＢＣ１２３ is not folded to ABC123


def test_ideographic_space_is_kept_in_html() -> None:
    doc = load("a.html", "<p>全角\u3000スペース</p>".encode())
    assert doc.text == "全角\u3000スペース"


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [TEXT, MD, HTML, PDF, DOCX])
@pytest.mark.parametrize("data", [b"", b" \n\r\n\t "])
def test_empty_files_are_unprocessable(content_type: str, data: bytes) -> None:
    with pytest.raises(Unprocessable, match="empty"):
        parse(data, content_type)


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("page.html", b"<html><head><title>t</title></head><body><script>x()</script></body></html>"),
        ("notes.md", b"---\n\n***\n"),
        ("doc.docx", zip_bytes({"word/document.xml": b"garbage"})),
        ("deep.html", b"<div>" * 5000 + b"text" + b"</div>" * 5000),
    ],
)
def test_files_without_text_or_with_broken_content_are_unprocessable(filename: str, data: bytes) -> None:
    with pytest.raises(Unprocessable):
        load(filename, data)


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n" + random_bytes(3000),
        b"%PDF-1.4\n%%EOF\n",
        TWO_PAGE_PDF[: len(TWO_PAGE_PDF) // 3],
    ],
)
def test_corrupt_pdfs_are_unprocessable(data: bytes) -> None:
    assert detect_content_type("x.pdf", data) == PDF
    with pytest.raises(Unprocessable) as caught:
        parse(data, PDF)
    assert caught.value.status == 422


def test_text_parsed_as_pdf_is_unprocessable_not_a_crash() -> None:
    with pytest.raises(Unprocessable, match="not a valid PDF"):
        parse(b"Hello, I am text.", PDF)


def test_scanned_pdf_without_text_layer_asks_for_ocr() -> None:
    with pytest.raises(Unprocessable, match="OCR"):
        load("scan.pdf", image_only_pdf_bytes())


def test_password_protected_pdf_is_unprocessable() -> None:
    with pytest.raises(Unprocessable, match="password"):
        load("secret.pdf", pdf_bytes([["Top secret."]], encrypt_password="s3cret"))


def test_pdf_encrypted_with_empty_user_password_opens() -> None:
    doc = load("locked.pdf", pdf_bytes([["Readable anyway."]], encrypt_password=""))
    assert doc.text == "Readable anyway."


@pytest.mark.parametrize("data", [docx_bytes()[:2000], b"PK\x03\x04" + random_bytes(500)])
def test_truncated_docx_is_unprocessable(data: bytes) -> None:
    assert detect_content_type("report.docx", data) == DOCX
    with pytest.raises(Unprocessable, match="docx"):
        parse(data, DOCX)


def test_undecodable_text_is_unprocessable() -> None:
    with pytest.raises(Unprocessable, match="UTF-8"):
        parse(random_bytes(3000, allow_nul=False), TEXT)


# --- large files arrive as parts ------------------------------------------------------------------------------
def _streamed(data: bytes, content_type: str) -> list[tuple[ParsedDocument, float]]:
    from app.ingest.parsers import parse_parts
    from app.ingest.payload import Payload

    return list(parse_parts(Payload.of_bytes(data), content_type))


def test_a_large_text_file_streams_in_parts_that_join_to_the_whole(monkeypatch: pytest.MonkeyPatch):
    from app.ingest import parsers
    from app.ingest.parsers import text as text_parser

    monkeypatch.setattr(parsers, "STREAM_TEXT_ABOVE", 1000)
    monkeypatch.setattr(text_parser, "WINDOW", 700)
    paragraphs = [
        f"Paragraph {i} says the printer on floor {i % 7} needs toner.   \r\nSecond line {i}." for i in range(80)
    ]
    data = ("\r\n\r\n".join(paragraphs) + "\n" + "x" * 1500 + " end of the long tail").encode()
    parts = _streamed(data, "text/plain")
    assert len(parts) > 5
    shares = [share for _, share in parts]
    assert shares == sorted(shares) and shares[-1] == 1.0
    whole = parse(data, "text/plain")
    assert "\n\n".join(p.text for p, _ in parts) == whole.text
    assert [b.text for p, _ in parts for b in p.blocks] == [b.text for b in whole.blocks]


def test_a_large_file_that_stops_being_text_is_refused_with_where(monkeypatch: pytest.MonkeyPatch):
    from app.ingest import parsers
    from app.ingest.parsers import text as text_parser

    monkeypatch.setattr(parsers, "STREAM_TEXT_ABOVE", 1000)
    monkeypatch.setattr(text_parser, "WINDOW", 500)
    # valid UTF-8 for the first 64 KiB (what the format is decided on), then not
    data = ("Plain words here.\n\n" * 4000).encode() + b"\xff\xfe broken \xc3\x28" + b"more\n" * 10
    with pytest.raises(Unprocessable) as err:
        _streamed(data, "text/plain")
    assert "near byte" in err.value.detail and "UTF-8" in err.value.detail


def test_a_pdf_streams_page_groups_with_the_same_blocks():
    pages = [[f"Page {n} explains clause {n}.", f"Clause {n} applies to contractors."] for n in range(1, 41)]
    data = pdf_bytes(pages, title="Contract terms")
    parts = _streamed(data, "application/pdf")
    whole = parse(data, "application/pdf")
    assert len(parts) == 3  # 16 + 16 + 8 pages
    assert [share for _, share in parts] == [16 / 40, 32 / 40, 1.0]
    assert all(p.title == "Contract terms" for p, _ in parts)
    assert [(b.text, b.page) for p, _ in parts for b in p.blocks] == [(b.text, b.page) for b in whole.blocks]
