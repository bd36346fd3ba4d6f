"""Map the model's [n] markers back to the chunks that were sent as source n."""

from __future__ import annotations

import re

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def cited_numbers(text: str) -> list[int]:
    """Source numbers in order of first appearance."""
    seen: dict[int, None] = {}
    for m in _MARKER.finditer(text):
        for part in m.group(1).split(","):
            seen.setdefault(int(part), None)
    return list(seen)


def strip_unknown(text: str, known: set[int]) -> str:
    """Remove citation markers that point at sources the model was never given."""

    def fix(m: re.Match[str]) -> str:
        keep = [p.strip() for p in m.group(1).split(",") if int(p) in known]
        return f"[{', '.join(keep)}]" if keep else ""

    return re.sub(r"\s+(?=[.。]?$)", "", _MARKER.sub(fix, text)) if text else text
