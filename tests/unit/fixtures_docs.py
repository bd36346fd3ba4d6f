"""Build real test documents at test time (no binary fixtures in the repository)."""

from __future__ import annotations

import io
import random
import zipfile

import docx
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

JAPANESE_FONT = "HeiseiMin-W3"  # one of reportlab's built-in CID fonts: no font file needed
JAPANESE_LINE = "日本語の文書です。全角ＡＢＣ１２３と「かぎ括弧」を含みます。"
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"

MARKDOWN_DOC = """\
Install Guide
=============

This guide explains the installation.
It has two lines.

## Requirements

- Python 3.11
- A database

## Steps

### Download

Run `pip install knowledge-search`.

```bash
ks serve --port 8000
```

| Option | Default |
|--------|---------|
| port   | 8000    |

# 付録

日本語の段落です。全角ＡＢＣ１２３はそのまま残ります。
"""

HTML_DOC = """\
<!DOCTYPE html>
<html>
<head><title>Company Handbook</title><style>p { color: red; }</style></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Handbook</h1>
<p>Welcome to   the <b>company</b>
handbook.</p>
<div>Direct text in a div.<p>Nested paragraph.</p></div>
<h2>Leave</h2>
<ul><li>Annual leave is 25 days.</li><li>Sick leave is unlimited.</li></ul>
<table><tr><th>Type</th><th>Days</th></tr><tr><td>Annual</td><td>25</td></tr></table>
<h3>Japan office</h3>
<p>東京オフィスの休暇は２０日です。</p>
<script>alert("do not index me")</script>
<h2>Expenses</h2>
<blockquote>Keep every receipt.</blockquote>
</body>
</html>
"""


def _register_japanese_font() -> None:
    if JAPANESE_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(JAPANESE_FONT))


def pdf_bytes(pages: list[list[str]], *, title: str | None = None, encrypt_password: str | None = None) -> bytes:
    """A PDF with one page per list of lines; lines with non-ASCII text use the Japanese CID font."""
    _register_japanese_font()
    buffer = io.BytesIO()
    encrypt = StandardEncryption(encrypt_password, ownerPassword="owner") if encrypt_password is not None else None
    pdf = canvas.Canvas(buffer, encrypt=encrypt)
    if title:
        pdf.setTitle(title)
    for lines in pages:
        y = 760
        for line in lines:
            pdf.setFont(JAPANESE_FONT if not line.isascii() else "Helvetica", 11)
            pdf.drawString(56, y, line)
            y -= 16
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def image_only_pdf_bytes() -> bytes:
    """A page with drawings but no text, like a scan."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.rect(50, 50, 300, 400, fill=1)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def docx_bytes(*, core_title: str | None = None) -> bytes:
    """A Word document with Title, Heading 1/Heading 2 sections, paragraphs and a table (one merged row)."""
    document = docx.Document()
    if core_title is not None:
        document.core_properties.title = core_title
    document.add_paragraph("Employee Handbook", style="Title")
    document.add_paragraph("Read this first.")
    document.add_heading("Benefits", level=1)
    document.add_paragraph("Everyone gets health insurance.")
    document.add_heading("Leave", level=2)
    document.add_paragraph("Annual leave is 25 days.")
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(table.rows, (("Type", "Days"), ("Annual", "25")), strict=False):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    merged = table.cell(2, 0).merge(table.cell(2, 1))
    merged.text = "Unused days expire in March."
    document.add_heading("Travel", level=1)
    document.add_paragraph(JAPANESE_LINE)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def random_bytes(n: int, *, seed: int = 7, allow_nul: bool = True) -> bytes:
    rng = random.Random(seed)
    low = 0 if allow_nul else 1
    return bytes(rng.randint(low, 255) for _ in range(n))
