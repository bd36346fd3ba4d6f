from __future__ import annotations

import pytest

from app.ingest.chunking import ChunkDraft, chunk_document
from app.ingest.parsers import Block, ParsedDocument, parse
from tests.unit.fixtures_docs import JAPANESE_LINE, MARKDOWN_DOC, pdf_bytes

JAPANESE_NO_BREAKS = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん" * 10


def doc_of(*specs: tuple[str, list[str], int | None, bool]) -> ParsedDocument:
    """A document from (text, heading_path, page, is_heading) blocks, joined like the parsers join them."""
    blocks: list[Block] = []
    offset = 0
    for text, path, page, is_heading in specs:
        blocks.append(Block(text, offset, offset + len(text), path, page, is_heading))
        offset += len(text) + 2
    return ParsedDocument("\n\n".join(b.text for b in blocks), blocks)


def para(text: str, path: list[str] | None = None, page: int | None = None) -> tuple:
    return (text, path or [], page, False)


def heading(text: str, path: list[str]) -> tuple:
    return (text, path, None, True)


def sentences(n: int, template: str = "Fact number {i} is true.") -> str:
    return " ".join(template.format(i=i) for i in range(n))


def check(doc: ParsedDocument, chunks: list[ChunkDraft], size: int, overlap: int) -> None:
    """What every chunking must guarantee, whatever the document."""
    covered = [False] * len(doc.text)
    for chunk in chunks:
        src = chunk.source
        assert chunk.text == doc.text[src.char_start : src.char_end]
        assert chunk.text == chunk.text.strip() and chunk.text
        assert len(chunk.text) <= size
        for block in doc.blocks:  # never across a page or a heading change
            if block.start < src.char_end and src.char_start < block.end:
                assert (block.page, block.heading_path) == (src.page, src.heading_path)
        covered[src.char_start : src.char_end] = [True] * len(chunk.text)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        shared = prev.source.char_end - nxt.source.char_start
        assert nxt.source.char_start > prev.source.char_start and nxt.source.char_end > prev.source.char_end
        assert shared <= overlap
        if shared > 0:
            assert (prev.source.page, prev.source.heading_path) == (nxt.source.page, nxt.source.heading_path)
            assert prev.text.endswith(nxt.text[:shared])
    lost = [c for c, seen in zip(doc.text, covered, strict=True) if not seen and not c.isspace()]
    assert lost == []  # every character of the document lands in some chunk


CASES = {
    "markdown": parse(MARKDOWN_DOC.encode(), "text/markdown"),
    "pdf": parse(pdf_bytes([[sentences(3), sentences(2)], [JAPANESE_LINE] * 4]), "application/pdf"),
    "english": doc_of(heading("Policy", ["Policy"]), para(sentences(40), ["Policy"]), para("Short.", ["Policy"])),
    "japanese": doc_of(para(JAPANESE_LINE * 8), para(JAPANESE_NO_BREAKS)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(("size", "overlap"), [(40, 0), (40, 15), (100, 30), (300, 0), (300, 120)])
def test_chunks_are_exact_bounded_slices_within_one_section(name: str, size: int, overlap: int) -> None:
    doc = CASES[name]
    check(doc, chunk_document(doc, size, overlap), size, overlap)


def test_short_blocks_of_a_section_are_packed_together() -> None:
    doc = doc_of(*(para(f"Paragraph {i} is short.") for i in range(10)))
    chunks = chunk_document(doc, 1000, 100)
    assert [c.text for c in chunks] == [doc.text]


def test_blocks_that_fit_are_not_cut() -> None:
    doc = doc_of(*(para(f"Paragraph {i} has a few words in it. And a second sentence.") for i in range(8)))
    chunks = chunk_document(doc, 160, 0)  # room for 2 blocks and a sentence of a 3rd
    starts, ends = {b.start for b in doc.blocks}, {b.end for b in doc.blocks}
    assert len(chunks) == 4
    assert all(c.source.char_start in starts and c.source.char_end in ends for c in chunks)


def test_long_paragraph_is_cut_at_sentence_ends() -> None:
    doc = doc_of(para(sentences(30)))
    chunks = chunk_document(doc, 100, 0)
    assert len(chunks) > 3
    assert all(c.text.startswith("Fact") and c.text.endswith("true.") for c in chunks)


def test_japanese_paragraph_is_cut_after_sentence_marks() -> None:
    text = "".join(f"これは{i}番目の文です！" if i % 3 else f"第{i}文。" for i in range(60))
    chunks = chunk_document(doc_of(para(text)), 50, 0)
    assert len(chunks) > 3
    assert all(c.text[-1] in "。！" for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_japanese_paragraph_without_spaces_or_marks_is_cut_hard_at_size() -> None:
    chunks = chunk_document(doc_of(para(JAPANESE_NO_BREAKS)), 120, 30)
    assert len(JAPANESE_NO_BREAKS) == 460
    assert [len(c.text) for c in chunks] == [120, 120, 120, 100]
    assert "".join(c.text for c in chunks) == JAPANESE_NO_BREAKS  # pieces of a sentence are not overlapped


def test_sentence_longer_than_size_is_cut_between_words() -> None:
    doc = doc_of(para(" ".join(f"word{i}" for i in range(200))))
    chunks = chunk_document(doc, 50, 0)
    assert len(chunks) > 10
    for chunk in chunks:
        end = chunk.source.char_end
        assert end == len(doc.text) or doc.text[end] == " "
        assert chunk.text.startswith("word")


def test_overlap_repeats_whole_trailing_sentences_of_previous_chunk() -> None:
    doc = doc_of(para(sentences(30)))
    chunks = chunk_document(doc, 100, 40)
    shared = [prev.source.char_end - nxt.source.char_start for prev, nxt in zip(chunks, chunks[1:], strict=False)]
    assert all(0 < s <= 40 for s in shared)
    for prev, nxt, s in zip(chunks, chunks[1:], shared, strict=False):
        repeated = nxt.text[:s]
        assert prev.text.endswith(repeated)
        assert repeated.startswith("Fact") and repeated.endswith("true.")  # whole sentences only


def test_no_overlap_across_sections_or_pages() -> None:
    doc = doc_of(
        heading("One", ["One"]),
        para(sentences(12), ["One"]),
        heading("Two", ["Two"]),
        para(sentences(12), ["Two"]),
        para(sentences(12), ["Two"], page=2),
    )
    chunks = chunk_document(doc, 120, 60)
    check(doc, chunks, 120, 60)
    section_starts = {doc.blocks[2].start, doc.blocks[4].start}
    first_of_section = [
        nxt
        for prev, nxt in zip(chunks, chunks[1:], strict=False)
        if prev.source.heading_path != nxt.source.heading_path
    ] + [next(c for c in chunks if c.source.page == 2)]
    assert {c.source.char_start for c in first_of_section} == section_starts


def test_heading_is_attached_to_the_text_that_follows_it() -> None:
    body = "This introduction paragraph is one single sentence that runs on for quite a while"
    doc = doc_of(heading("Introduction", ["Introduction"]), para(body, ["Introduction"]))
    chunks = chunk_document(doc, 60, 0)
    check(doc, chunks, 60, 0)
    assert chunks[0].text.startswith("Introduction\n\nThis introduction")
    assert all(c.text != "Introduction" for c in chunks)
    assert all(c.source.heading_path == ["Introduction"] for c in chunks)


def test_heading_of_an_empty_section_is_its_own_chunk() -> None:
    doc = parse(b"# Guide\n\n## Setup\n\nRun the installer.\n", "text/markdown")
    chunks = chunk_document(doc, 500, 50)
    assert [(c.text, c.source.heading_path) for c in chunks] == [
        ("Guide", ["Guide"]),
        ("Setup\n\nRun the installer.", ["Guide", "Setup"]),
    ]


def test_pdf_chunks_keep_their_page() -> None:
    doc = parse(pdf_bytes([["Page one text."], ["Page two text."], [JAPANESE_LINE]]), "application/pdf")
    chunks = chunk_document(doc, 1000, 100)
    assert [(c.text, c.source.page) for c in chunks] == [
        ("Page one text.", 1),
        ("Page two text.", 2),
        (JAPANESE_LINE, 3),
    ]


def test_empty_document_gives_no_chunks() -> None:
    assert chunk_document(ParsedDocument("", []), 100, 10) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_impossible_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_document(doc_of(para("text")), size, overlap)
