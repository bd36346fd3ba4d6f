"""What a document's metadata may hold: a JSON object of bounded size whose numbers are finite.

NaN and Infinity are not JSON: Python's parser accepts them, SQLite's and Postgres' JSON functions do not, so a
single such value once broke every filtered search of its collection. The API refuses them at the edge (422) and
the ingest service checks again for every other way in (CLI, sources).
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_METADATA_BYTES = 16 * 1024
MAX_DEPTH = 8
MAX_KEY_CHARS = 128


def check_metadata(value: Any) -> dict[str, Any]:
    """The metadata itself, or ValueError saying what is wrong (pydantic turns that into a 422)."""
    if not isinstance(value, dict):
        raise ValueError('metadata must be a JSON object, like {"dept": "hr"}')
    _check(value, "metadata", 0)
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
    return value


def check_finite(value: Any, where: str = "value") -> Any:
    _check(value, where, 0)
    return value


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a JSON number; send a finite number, a string or null")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or len(k) > MAX_KEY_CHARS:
                raise ValueError(f"{where}: keys are strings of at most {MAX_KEY_CHARS} characters")
            _check(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check(v, f"{where}[{i}]", depth + 1)
    elif not (value is None or isinstance(value, str | int | float | bool)):
        raise ValueError(f"{where}: only JSON values are allowed")
