"""Hostile files for the upload guards: each small on the wire, huge once inflated or parsed.

Everything is written as a stream (nothing hostile is ever held whole in memory here), so building a 300 MB bomb
costs this process a few MiB. ``bench.bombs`` uploads them to a real server; tests build small ones.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import docx

_MB = 1 << 20
_PIECE = 1 << 20


def _repeat(unit: bytes, total: int) -> Iterable[bytes]:
    """``unit`` repeated to about ``total`` bytes, in pieces of about a MiB."""
    block = unit * max(1, _PIECE // len(unit))
    written = 0
    while written < total:
        piece = block[: total - written]
        written += len(piece)
        yield piece


def _docx_parts() -> dict[str, bytes]:
    """The members of a real, empty .docx (python-docx's default template)."""
    buffer = io.BytesIO()
    docx.Document().save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


_BODY_OPEN = b"<w:body>"


def docx_bomb(
    path: Path, inflated_mb: float = 300, *, member: str = "word/document.xml", unit: bytes = b"<w:p/>"
) -> Path:
    """A .docx whose ``member`` (document.xml by default) inflates to ``inflated_mb`` of ``unit`` (empty paragraphs),
    deflated at level 9: about 1,000 times smaller on the wire."""
    parts = _docx_parts()
    total = int(inflated_mb * _MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in parts.items():
            if name != member:
                archive.writestr(name, data)
                continue
            # document.xml: the paragraphs go inside <w:body>; another part: before its root's closing tag.
            if member == "word/document.xml":
                head, sep, tail = data.partition(_BODY_OPEN)
                head += sep
            else:
                cut = data.rstrip().rindex(b"</")
                head, tail = data[:cut], data[cut:]
            with archive.open(name, "w", force_zip64=True) as out:
                out.write(head)
                for piece in _repeat(unit, total):
                    out.write(piece)
                out.write(tail)
    return path


def docx_lying_sizes(path: Path, inflated_mb: float = 300) -> Path:
    """:func:`docx_bomb`, then its local and central headers rewritten to declare document.xml as 1 KB."""
    docx_bomb(path, inflated_mb)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("word/document.xml")
    _patch_sizes(data, info.filename.encode())
    path.write_bytes(bytes(data))
    return path


def _patch_sizes(data: bytearray, name: bytes) -> None:
    """Set the uncompressed size of ``name`` to 1,000 in its local header, central header and zip64 extras."""
    import struct

    start = 0
    while (at := data.find(name, start)) != -1:
        start = at + 1
        if data[at - 30 : at - 26] == b"PK\x03\x04":  # local file header
            header = at - 30
            size_at, extra_len = header + 22, struct.unpack_from("<H", data, header + 28)[0]
            extra_at = at + len(name)
        elif data[at - 46 : at - 42] == b"PK\x01\x02":  # central directory header
            header = at - 46
            size_at, extra_len = header + 24, struct.unpack_from("<H", data, header + 30)[0]
            extra_at = at + len(name)
        else:
            continue
        if struct.unpack_from("<I", data, size_at)[0] != 0xFFFFFFFF:
            struct.pack_into("<I", data, size_at, 1000)
        # zip64 extra field (id 1): uncompressed size first
        i = extra_at
        while i < extra_at + extra_len:
            field, length = struct.unpack_from("<HH", data, i)
            if field == 1 and length >= 8:
                struct.pack_into("<Q", data, i + 4, 1000)
            i += 4 + length


def docx_many_parts(path: Path, parts: int = 480_000) -> Path:
    """A .docx with hundreds of thousands of empty parts (stored): 45 MB, and an object per part in zipfile."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in _docx_parts().items():
            archive.writestr(name, data)
        for i in range(parts):
            archive.writestr(f"p/{i}", b"")
    return path


def _deflate(chunks: Iterable[bytes]) -> bytes:
    compressor = zlib.compressobj(9)
    out = [compressor.compress(c) for c in chunks]
    out.append(compressor.flush())
    return b"".join(out)


def pdf(path: Path, page_streams: list[bytes], form: bytes | None = None) -> Path:
    """A minimal valid PDF: one page per already-deflated content stream, Helvetica as /F1, and optionally one
    (deflated) form XObject /X1 that every page may draw."""
    objects: list[bytes] = []
    n_pages = len(page_streams)
    first_page = 4 if form is None else 5
    kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    xobjects = ""
    if form is not None:
        objects.append(
            f"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Length {len(form)} /Filter /FlateDecode >>\nstream\n".encode()
            + form
            + b"\nendstream"
        )
        xobjects = " /XObject << /X1 4 0 R >>"
    for i, stream in enumerate(page_streams):
        content = first_page + 1 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>{xobjects} >> "
            f"/Contents {content} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode() + stream + b"\nendstream")
    with path.open("wb") as out:
        out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(out.tell())
            out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
        xref = out.tell()
        out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
        for offset in offsets:
            out.write(f"{offset:010d} 00000 n \n".encode())
        out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return path


def pdf_flate_bomb(path: Path, inflated_mb: float = 500, pages: int = 1) -> Path:
    """Pages whose content stream inflates to ``inflated_mb`` of whitespace after one line of text."""
    stream = _deflate([b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET\n", *_repeat(b" ", int(inflated_mb * _MB))])
    return pdf(path, [stream] * pages)


def pdf_operator_flood(path: Path, inflated_mb: float = 70, pages: int = 1) -> Path:
    """Pages whose content stream (just under pypdf's own 75 MB inflate limit) is millions of text operators."""
    stream = _deflate([b"BT /F1 12 Tf 72 720 Td\n", *_repeat(b"(a) Tj\n", int(inflated_mb * _MB)), b"ET\n"])
    return pdf(path, [stream] * pages)


def pdf_form_drawn_often(path: Path, form_mb: float = 1, draws: int = 5_000) -> Path:
    """One page that draws a form XObject of ``form_mb`` of text operators ``draws`` times (pypdf parses the form
    again for each draw)."""
    form = _deflate([b"BT /F1 12 Tf 72 720 Td\n", *_repeat(b"(a) Tj\n", int(form_mb * _MB)), b"ET\n"])
    page = _deflate([b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET\n", b"/X1 Do\n" * draws])
    return pdf(path, [page], form=form)


def pdf_many_pages(path: Path, pages: int = 50_000) -> Path:
    """A PDF of many tiny pages (each with one word of text)."""
    stream = _deflate([b"BT /F1 12 Tf 72 720 Td (page) Tj ET\n"])
    return pdf(path, [stream] * pages)


def _write(path: Path, pieces: Iterable[bytes]) -> Path:
    with path.open("wb") as out:
        for piece in pieces:
            out.write(piece)
    return path


def html_deep(path: Path, size_mb: float = 49.5) -> Path:
    """Unclosed <div>s all the way down."""
    return _write(path, [b"<!doctype html><html><body>", *_repeat(b"<div>", int(size_mb * _MB))])


def html_flat(path: Path, size_mb: float = 49.5) -> Path:
    """Millions of tiny elements side by side."""
    return _write(path, [b"<!doctype html><html><body>", *_repeat(b"<b>x</b>", int(size_mb * _MB))])


def html_one_paragraph(path: Path, size_mb: float = 49.5) -> Path:
    """One paragraph of millions of one-letter words."""
    return _write(path, [b"<!doctype html><html><body><p>", *_repeat(b"a ", int(size_mb * _MB))])


def markdown_list(path: Path, size_mb: float = 49.5) -> Path:
    """Millions of one-character list items (each becomes several parser tokens)."""
    return _write(path, _repeat(b"- a\n", int(size_mb * _MB)))


def markdown_quotes(path: Path, size_mb: float = 49.5) -> Path:
    """Deeply nested block quotes, a line at a time."""
    return _write(path, _repeat(b"> " * 50 + b"a\n", int(size_mb * _MB)))


def markdown_inline_heading(path: Path, size_mb: float = 49.5) -> Path:
    """One heading line of millions of emphasis spans."""
    return _write(path, [b"# ", *_repeat(b"*a* ", int(size_mb * _MB)), b"\n\nbody\n"])


def text_no_whitespace(path: Path, size_mb: float = 49.5) -> Path:
    return _write(path, _repeat(b"abcdefghij", int(size_mb * _MB)))


def text_no_newlines(path: Path, size_mb: float = 49.5) -> Path:
    return _write(path, _repeat(b"lorem ipsum dolor sit amet ", int(size_mb * _MB)))


# name → (file name, builder); the builder writes the file at the given path.
HOSTILE: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "docx-bomb-300mb": ("bomb.docx", docx_bomb),
    "docx-bomb-lying-sizes": ("lying.docx", docx_lying_sizes),
    "docx-bomb-styles": ("styles.docx", lambda p: docx_bomb(p, 300, member="word/styles.xml", unit=b"<w:style/>")),
    "docx-480k-parts": ("parts.docx", docx_many_parts),
    "pdf-flate-bomb-500mb": ("flate.pdf", pdf_flate_bomb),
    "pdf-flate-70mb-x16-pages": ("flate16.pdf", lambda p: pdf_flate_bomb(p, 70, pages=16)),
    "pdf-flate-15mb-x16-pages": ("flate15x16.pdf", lambda p: pdf_flate_bomb(p, 15, pages=16)),
    "pdf-operator-flood": ("ops.pdf", pdf_operator_flood),
    "pdf-form-drawn-5000-times": ("form.pdf", pdf_form_drawn_often),
    "pdf-50k-pages": ("pages.pdf", pdf_many_pages),
    "html-deep-50mb": ("deep.html", html_deep),
    "html-flat-50mb": ("flat.html", html_flat),
    "html-one-paragraph-50mb": ("para.html", html_one_paragraph),
    "markdown-list-50mb": ("list.md", markdown_list),
    "markdown-quotes-50mb": ("quotes.md", markdown_quotes),
    "markdown-inline-heading-50mb": ("heading.md", markdown_inline_heading),
    "text-no-whitespace-50mb": ("nows.txt", text_no_whitespace),
    "text-no-newlines-50mb": ("nonl.txt", text_no_newlines),
}
