"""Markdown: markdown-it-py tokens give each block's source line range; headings drive the heading path."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from app.core.errors import Unprocessable
from app.ingest.parsers.base import ParsedDocument
from app.ingest.parsers.text import NO_TEXT, DocBuilder, HeadingTrail, decode_text, normalize

CONTENT_TYPE = "text/markdown"

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n(?:---|\.\.\.)\n", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.MULTILINE)
_LISTS = {"bullet_list_open", "ordered_list_open"}


def _plain(inline: Token) -> str:
    """A heading's text without emphasis/code markers (what a reader sees)."""
    parts = [
        " " if child.type in ("softbreak", "hardbreak") else child.content
        for child in inline.children or []
        if child.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return " ".join("".join(parts).split()) or inline.content.strip()


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


def parse(data: bytes) -> ParsedDocument:
    raw = decode_text(data)
    if raw is None:
        raise Unprocessable("The Markdown file is not valid text: its encoding could not be detected. Save it as UTF-8")
    source, title = _split_front_matter(normalize(raw).lstrip("\ufeff"))
    lines = source.split("\n")
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    builder = DocBuilder(CONTENT_TYPE)
    trail = HeadingTrail()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            heading = _plain(tokens[i + 1])
            if heading:
                trail.enter(int(token.tag[1:]), heading)
                title = title or (heading if token.tag == "h1" else None)
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
