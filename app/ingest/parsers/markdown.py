"""Markdown: markdown-it-py tokens give each block's source line range; headings drive the heading path."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from app.core.errors import Unprocessable
from app.ingest.parsers.base import ParsedDocument
from app.ingest.parsers.limits import (
    BYTES_PER_TEXT_BYTE,
    DEFAULT_LIMITS,
    MARKDOWN_BYTES_PER_LINE,
    ParseLimits,
    check_parse_memory,
)
from app.ingest.parsers.text import (
    MAX_TITLE_CHARS,
    NO_TEXT,
    DocBuilder,
    HeadingTrail,
    collapse_spaces,
    decode_text,
    normalize,
    short_text,
)

CONTENT_TYPE = "text/markdown"

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.MULTILINE)
_LISTS = {"bullet_list_open", "ordered_list_open"}
# Only headings need their inline markup (emphasis, code) read; the blocks keep their source lines. So the
# document is parsed into blocks only, and a heading's inline content on its own, when it is of a sane length:
# inline parsing makes a token per emphasis span, and a heading can be one 50 MB line.
_MAX_INLINE_HEADING = 2_000


def _plain(inline: Token, md: MarkdownIt) -> str:
    """A heading's text without emphasis/code markers (what a reader sees)."""
    if len(inline.content) > _MAX_INLINE_HEADING:
        return inline.content.strip()
    children = md.parseInline(inline.content)[0].children or []
    parts = [
        " " if child.type in ("softbreak", "hardbreak") else child.content
        for child in children
        if child.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return collapse_spaces("".join(parts)) or inline.content.strip()


def _close_index(tokens: list[Token], i: int) -> int:
    """Index just past the token that closes tokens[i]."""
    opening = tokens[i]
    if opening.nesting != 1:
        return i + 1
    closing = opening.type.removesuffix("_open") + "_close"
    for j in range(i + 1, len(tokens)):
        if tokens[j].type == closing and tokens[j].level == opening.level:
            return j + 1
    return len(tokens)


def _split_front_matter(text: str) -> tuple[str, str | None]:
    """Drop YAML front matter (it would parse as a setext heading); return the rest and its title."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, None
    title = _FRONT_TITLE.search(match.group(1))
    return text[match.end() :], title.group(1).strip("\"'") if title else None


def parse(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedDocument:
    # The block parser keeps several Python objects per line: count lines before it runs.
    lines_count = data.count(b"\n") + 1
    check_parse_memory(
        "The Markdown file", lines_count, "lines", MARKDOWN_BYTES_PER_LINE, len(data) * BYTES_PER_TEXT_BYTE, limits
    )
    raw = decode_text(data)
    if raw is None:
        raise Unprocessable("The Markdown file is not valid text: its encoding could not be detected. Save it as UTF-8")
    source, title = _split_front_matter(normalize(raw).lstrip("\ufeff"))
    lines = source.split("\n")
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.disable("inline").parse(source)
    md.enable("inline")
    builder = DocBuilder(CONTENT_TYPE)
    trail = HeadingTrail()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            heading = _plain(tokens[i + 1], md)
            if heading:
                trail.enter(int(token.tag[1:]), heading)
                title = title or (short_text(heading, MAX_TITLE_CHARS) if token.tag == "h1" else None)
                builder.add(heading, trail.path, is_heading=True)
            i = _close_index(tokens, i)
        elif token.type in _LISTS:
            i += 1  # each item becomes its own block
        elif token.map is not None and token.type != "hr":
            start, end = token.map
            builder.add("\n".join(lines[start:end]), trail.path)
            i = _close_index(tokens, i)
        else:
            i += 1
    return builder.build(title, empty_detail=NO_TEXT)
