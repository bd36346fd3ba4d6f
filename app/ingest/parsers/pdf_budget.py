"""What reading a PDF's text may cost: pypdf's own limits, set from ours, and a budget of content bytes per file.

pypdf 7 already refuses a single stream that inflates past a limit (75 MB by default) and bounds page trees,
arrays and tokens per stream. It does not bound a whole file: sixteen pages of 70 MB of whitespace each inflate
and parse one after the other (minutes of CPU, and each page's inflated bytes stay cached on its stream), and a
form XObject drawn 5,000 times on a page is parsed 5,000 times. So before each page is read we add up what its
text extraction will parse: its content streams, plus every form it draws (``/Name Do``), as often as it draws
it, nested forms included. Past ``inflated_bytes`` for the file, the upload is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pypdf import PageObject, PdfReader, apply_configuration
from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

from app.ingest.parsers.limits import ParseLimits, too_large

_MIB = 1 << 20
# "/Name Do": a name token (no delimiters or white space) then the Do operator.
_DO = re.compile(rb"/([^\s/\[\]()<>{}%]+)\s*Do(?![^\s/\[\]()<>{}%])")
# A form nested deeper than this is not followed further (pypdf itself skips cycles).
_MAX_DEPTH = 32


@contextmanager
def pypdf_limits(limits: ParseLimits) -> Iterator[None]:
    """pypdf's limits for the duration of a block, set explicitly from ours (never from its defaults)."""
    stream = limits.pdf_stream_bytes
    with apply_configuration(
        zlib_maximum_output_length=stream,
        lzw_maximum_output_length=stream,
        run_length_maximum_output_length=stream,
        brotli_maximum_output_length=stream,
        array_based_stream_maximum_output_length=stream,
        stream_decoding_work_maximum_length=4 * stream,
        # Page tree nodes: the pages plus their /Pages parents, generously.
        page_tree_maximum_entries=2 * limits.pdf_pages + 1_000,
        page_tree_maximum_page_entries=64 * limits.pdf_pages,
    ):
        yield


class ContentBudget:
    """Bytes of page content a file's text extraction may parse in all (``limits.inflated_bytes``)."""

    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        self.used = 0

    def charge_page(self, page: PageObject, number: int) -> list[StreamObject]:
        """Count what reading ``page`` will parse; 413 past the budget. Returns the streams it inflated, whose
        cached bytes the caller drops once the page is read."""
        inflated: list[StreamObject] = []
        costs: dict[int, int] = {}
        cost = 0
        for stream in _streams(page.get("/Contents")):
            cost += self._stream_cost(stream, _resources(page), costs, inflated, depth=0)
        self.used += cost
        if self.used > self._limits.inflated_bytes:
            raise too_large(
                f"The PDF's page content inflates to more than {self._limits.inflated_bytes / _MIB:,.0f} MiB "
                f"by page {number} (forms drawn many times count each time)",
                f"{self._limits.inflated_bytes / _MIB:,.0f} MiB",
                "KS_MAX_INFLATED_MB",
            )
        return inflated

    def _stream_cost(
        self,
        stream: StreamObject,
        resources: DictionaryObject | None,
        costs: dict[int, int],
        inflated: list[StreamObject],
        depth: int,
    ) -> int:
        key = id(stream)
        if key in costs:
            return costs[key]
        costs[key] = 0  # a form that draws itself costs nothing more (pypdf skips the cycle)
        data = stream.get_data()
        inflated.append(stream)
        cost = len(data)
        if depth < _MAX_DEPTH and resources is not None:
            xobjects = _resolve(resources.get("/XObject"))
            if isinstance(xobjects, DictionaryObject):
                for match in _DO.finditer(data):
                    form = _resolve(xobjects.get("/" + match.group(1).decode("latin-1")))
                    if isinstance(form, StreamObject) and form.get("/Subtype") == "/Form":
                        # A form without its own resources uses those of whatever draws it.
                        inner = _resolve(form.get("/Resources"))
                        inner = inner if isinstance(inner, DictionaryObject) else resources
                        cost += self._stream_cost(form, inner, costs, inflated, depth + 1)
                        if self.used + cost > self._limits.inflated_bytes:
                            break  # already over: no need to add up the rest
        costs[key] = cost
        return cost


def drop_cached(streams: list[StreamObject]) -> None:
    """Forget the inflated bytes pypdf keeps on each stream it decoded, so pages do not pile up in memory."""
    for stream in streams:
        if getattr(stream, "decoded_self", None) is not None:
            stream.decoded_self = None


def declared_pages(reader: PdfReader) -> int | None:
    """The page count the file declares (``/Count`` of its page tree), read without walking the tree."""
    pages = _resolve(_resolve(reader.trailer.get("/Root")).get("/Pages")) if reader.trailer.get("/Root") else None
    count = pages.get("/Count") if isinstance(pages, DictionaryObject) else None
    return int(count) if isinstance(count, int) else None


def check_pages(count: int, limits: ParseLimits) -> None:
    if count > limits.pdf_pages:
        raise too_large(f"The PDF has {count:,} pages", f"{limits.pdf_pages:,} pages", "KS_MAX_PDF_PAGES")


def _resolve(obj: Any) -> Any:
    return obj.get_object() if obj is not None and hasattr(obj, "get_object") else obj


def _resources(page: PageObject) -> DictionaryObject | None:
    resources = _resolve(page.get("/Resources"))
    return resources if isinstance(resources, DictionaryObject) else None


def _streams(contents: Any) -> list[StreamObject]:
    contents = _resolve(contents)
    if isinstance(contents, StreamObject):
        return [contents]
    if isinstance(contents, ArrayObject):
        return [s for s in (_resolve(item) for item in contents) if isinstance(s, StreamObject)]
    return []
