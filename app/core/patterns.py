"""The shapes of names the service accepts: collections, principals, bucket names. One definition each, used by
the API schemas (as JSON Schema patterns) and by the code that checks values arriving another way (multipart
fields, headers, the CLI). Always ``fullmatch``: with ``re.match``, ``$`` also matches before a final newline."""

from __future__ import annotations

import re

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# kind:name, e.g. user:alice, group:hr. No spaces or commas: X-On-Behalf-Of is a comma-separated list of them.
# Control characters are named as well as \s: Python's \s counts \x1c-\x1f as spaces, the schema validator's does not.
PRINCIPAL_PATTERN = r"^[a-z][a-z0-9_-]{0,31}:[^\s,\x00-\x1f\x7f]{1,200}$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"

_COLLECTION = re.compile(COLLECTION_PATTERN)
_PRINCIPAL = re.compile(PRINCIPAL_PATTERN)

COLLECTION_RULE = "collection names use letters, digits, '_', '.', '-' (up to 128, starting with a letter or digit)"
PRINCIPAL_RULE = "principals look like 'user:alice' or 'group:hr' (kind:name, no spaces or commas)"


def is_collection(value: str) -> bool:
    return _COLLECTION.fullmatch(value) is not None


def is_principal(value: str) -> bool:
    return _PRINCIPAL.fullmatch(value) is not None
