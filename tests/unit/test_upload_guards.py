"""The parsers' guards (app/ingest/parsers/limits.py, pdf_budget.py): hostile files are refused with 413 and a
detail that names the limit, before the parser builds anything; ordinary files of the same kind still parse."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import pytest

from app.core.errors import PayloadTooLarge, Unprocessable
from app.ingest.parsers import DEFAULT_LIMITS, ParseLimits, detect_content_type, parse, parse_parts
from app.ingest.parsers.limits import TagCounter, check_zip
from app.ingest.parsers.text import MAX_HEADING_CHARS
from app.ingest.payload import Payload
from bench import hostile
from tests.unit.fixtures_docs import HTML_DOC, MARKDOWN_DOC, docx_bytes, pdf_bytes

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MIB = 1 << 20


def _docx_with_paragraphs(n: int, paragraph: bytes = b"<w:p/>") -> bytes:
    parts = hostile._docx_parts()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            if name == "word/document.xml":
                head, sep, tail = data.partition(b"<w:body>")
                data = head + sep + b"<w:p><w:r><w:t>Hello</w:t></w:r></w:p>" + paragraph * n + tail
            archive.writestr(name, data)
    return buffer.getvalue()


# --- DOCX ---------------------------------------------------------------------------------------------------
def test_docx_bomb_is_refused_at_detection_from_its_declared_sizes(tmp_path: Path):
    bomb = hostile.docx_bomb(tmp_path / "bomb.docx", 40).read_bytes()
    assert len(bomb) < MIB  # small on the wire
    with pytest.raises(PayloadTooLarge) as refused:
        detect_content_type("bomb.docx", bomb)
    assert "word/document.xml" in refused.value.detail and "KS_MAX_COMPRESSION_RATIO" in refused.value.detail
    assert "Split the document" in refused.value.detail
    with pytest.raises(PayloadTooLarge):
        parse(bomb, DOCX)


def test_docx_whose_headers_lie_is_refused_by_what_it_really_inflates_to(tmp_path: Path):
    lying = hostile.docx_lying_sizes(tmp_path / "lying.docx", 40).read_bytes()
    with zipfile.ZipFile(io.BytesIO(lying)) as archive:  # the directory says 1,000 bytes...
        assert archive.getinfo("word/document.xml").file_size == 1000
    assert detect_content_type("lying.docx", lying) == DOCX  # ...so the cheap check lets it through
    # ...but the real bytes are counted as they inflate, a MiB at a time, before python-docx reads them
    limits = ParseLimits(inflated_bytes=8 * MIB, compression_ratio=100_000)
    with pytest.raises(PayloadTooLarge) as refused:
        parse(lying, DOCX, limits)
    assert "KS_MAX_INFLATED_MB" in refused.value.detail


def test_every_part_of_a_docx_is_measured_not_only_the_document(tmp_path: Path):
    bomb = hostile.docx_bomb(tmp_path / "styles.docx", 40, member="word/styles.xml", unit=b"<w:style/>").read_bytes()
    with pytest.raises(PayloadTooLarge) as refused:
        parse(bomb, DOCX)
    assert "word/styles.xml" in refused.value.detail


def test_docx_with_too_many_elements_is_refused_before_python_docx_builds_them():
    many = _docx_with_paragraphs(60_000)
    roomy_ratio = ParseLimits(parse_bytes=16 * MIB, compression_ratio=100_000)
    with pytest.raises(PayloadTooLarge) as refused:
        parse(many, DOCX, roomy_ratio)
    assert "XML elements" in refused.value.detail and "KS_MAX_PARSE_MB" in refused.value.detail
    # the same file under the default limits is an ordinary (if empty) document
    assert parse(many, DOCX, ParseLimits(compression_ratio=100_000)).text == "Hello"


@pytest.mark.parametrize("parts", [12_000, 70_000])  # 70,000 needs zip64's end record
def test_a_docx_of_too_many_parts_is_refused_before_zipfile_reads_its_directory(tmp_path: Path, parts: int):
    many = hostile.docx_many_parts(tmp_path / "many.docx", parts).read_bytes()
    with pytest.raises(PayloadTooLarge) as refused:
        detect_content_type("many.docx", many)
    assert f"{parts + len(hostile._docx_parts()):,} parts" in refused.value.detail
    with pytest.raises(PayloadTooLarge):
        parse(many, DOCX)


def test_an_ordinary_docx_passes_every_guard():
    check_zip(io.BytesIO(docx_bytes()), DEFAULT_LIMITS)
    assert "Annual leave is 25 days." in parse(docx_bytes(), DOCX).text


def test_a_truncated_deflate_stream_is_damaged_not_a_crash():
    good = bytearray(docx_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(good))) as archive:
        info = archive.getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    good[start : start + info.compress_size] = b"\xff" * info.compress_size  # garbage where deflate data was
    with pytest.raises(Unprocessable):
        parse(bytes(good), DOCX)


def test_tag_counter_counts_across_block_boundaries():
    data = b"<a><b/></b><!-- c --><?pi?><d>text</d></a>"
    for size in (1, 2, 3, 7, len(data)):
        counter = TagCounter()
        for i in range(0, len(data), size):
            counter.feed(data[i : i + size])
        assert counter.finish() == 5, size  # a, b, comment, pi, d


# --- PDF ----------------------------------------------------------------------------------------------------
def _pdf_parts(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> list[str]:
    return [part.text for part, _ in parse_parts(Payload.of_bytes(data), "application/pdf", limits)]


def test_pdf_flate_bomb_is_refused_by_the_stream_limit_set_on_pypdf(tmp_path: Path):
    bomb = hostile.pdf_flate_bomb(tmp_path / "flate.pdf", 40).read_bytes()
    with pytest.raises(PayloadTooLarge) as refused:
        _pdf_parts(bomb)
    assert "KS_MAX_PDF_STREAM_MB" in refused.value.detail
    # pypdf's own default (75 MB) would have inflated it: the limit is ours
    assert "16 MiB" in refused.value.detail


def test_pdf_pages_just_under_the_stream_limit_are_refused_by_the_file_budget(tmp_path: Path):
    pages = hostile.pdf_flate_bomb(tmp_path / "pages.pdf", 0.9, pages=6).read_bytes()
    limits = ParseLimits(pdf_stream_bytes=1 * MIB, inflated_bytes=4 * MIB)
    with pytest.raises(PayloadTooLarge) as refused:
        _pdf_parts(pages, limits)
    assert "KS_MAX_INFLATED_MB" in refused.value.detail and "by page 5" in refused.value.detail
    assert _pdf_parts(pages, ParseLimits(pdf_stream_bytes=1 * MIB, inflated_bytes=8 * MIB)) == [
        "Hello\n\n" * 5 + "Hello"
    ]


def test_a_form_drawn_thousands_of_times_counts_each_time(tmp_path: Path):
    form = hostile.pdf_form_drawn_often(tmp_path / "form.pdf", form_mb=0.1, draws=5_000).read_bytes()
    assert len(form) < 100_000
    with pytest.raises(PayloadTooLarge) as refused:
        _pdf_parts(form)
    assert "forms drawn many times" in refused.value.detail
    drawn_twice = hostile.pdf_form_drawn_often(tmp_path / "twice.pdf", form_mb=0.01, draws=2).read_bytes()
    assert "Hello" in _pdf_parts(drawn_twice)[0]


def test_pdf_page_count_is_bounded(tmp_path: Path):
    many = hostile.pdf_many_pages(tmp_path / "many.pdf", 12).read_bytes()
    with pytest.raises(PayloadTooLarge) as refused:
        _pdf_parts(many, ParseLimits(pdf_pages=10))
    assert "12 pages" in refused.value.detail and "KS_MAX_PDF_PAGES" in refused.value.detail
    assert len(_pdf_parts(many, ParseLimits(pdf_pages=12))) == 1


def test_an_ordinary_pdf_still_parses_page_by_page():
    assert _pdf_parts(pdf_bytes([["First page."], ["Second page."]])) == ["First page.\n\nSecond page."]


# --- HTML, Markdown, text -----------------------------------------------------------------------------------
def test_html_with_too_many_tags_is_refused_before_beautifulsoup_builds_them():
    page = b"<html><body>" + b"<b>x</b>" * 5_000
    with pytest.raises(PayloadTooLarge) as refused:
        parse(page, "text/html", ParseLimits(parse_bytes=4 * MIB))
    assert (
        "5,00" in refused.value.detail and "tags" in refused.value.detail and "KS_MAX_PARSE_MB" in refused.value.detail
    )
    assert parse(page, "text/html").text.startswith("x")
    assert "Annual leave is 25 days." in parse(HTML_DOC.encode(), "text/html").text


def test_markdown_with_too_many_lines_is_refused_before_the_block_parser_runs():
    many = b"- a\n" * 5_000
    with pytest.raises(PayloadTooLarge) as refused:
        parse(many, "text/markdown", ParseLimits(parse_bytes=8 * MIB))
    assert "5,001 lines" in refused.value.detail
    assert len(parse(many, "text/markdown").blocks) == 5_000
    assert parse(MARKDOWN_DOC.encode(), "text/markdown").title == "Install Guide"


def test_a_huge_heading_is_kept_as_text_but_cut_in_the_heading_path_and_title():
    heading = "*word* " * 20_000  # 140,000 characters of emphasis in one heading line
    doc = parse(f"# {heading}\n\nBody text.\n".encode(), "text/markdown")
    assert len(doc.blocks[0].text) > 100_000  # the heading's own text is all there, markers included
    assert len(doc.blocks[1].heading_path[0]) == MAX_HEADING_CHARS  # what every chunk of its section carries
    assert doc.title is not None and len(doc.title) <= 512
    short = parse(b"# Hello *world* `code`\n\nBody\n", "text/markdown")
    assert short.title == "Hello world code" and short.blocks[1].heading_path == ["Hello world code"]


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("h.html", b"<html><body><h1>" + b"long heading " * 5_000 + b"</h1><p>body</p>"),
        ("h.docx", b""),
    ],
)
def test_heading_paths_are_cut_in_html_and_docx(filename: str, data: bytes):
    if filename.endswith(".docx"):
        document = docx.Document()
        document.add_heading("long heading " * 5_000, level=1)
        document.add_paragraph("body")
        buffer = io.BytesIO()
        document.save(buffer)
        data = buffer.getvalue()
    doc = parse(data, detect_content_type(filename, data))
    body = next(b for b in doc.blocks if b.text == "body")
    assert len(body.heading_path[0]) == MAX_HEADING_CHARS
