"""What every parser returns: the document's text cut into structural blocks with their positions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Block:
    """A paragraph-like piece of a document.

    ``start``/``end`` are character offsets into ``ParsedDocument.text``.
    A block never spans two pages or two sections.
    """

    text: str
    start: int
    end: int
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    is_heading: bool = False


@dataclass(slots=True)
class ParsedDocument:
    text: str
    blocks: list[Block]
    title: str | None = None
    content_type: str = "text/plain"
