"""The shapes of names the service accepts: collections, principals, bucket names. One definition each, used by
the API schemas (as JSON Schema patterns) and by the code that checks values arriving another way (multipart
fields, headers, the CLI). Always ``fullmatch``: with ``re.match``, ``$`` also matches before a final newline."""

from __future__ import annotations

import re
from typing import Any

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# kind:name, e.g. user:alice, group:hr. No spaces or commas: X-On-Behalf-Of is a comma-separated list of them.
# Control characters (C0 and C1) are named as well as \s: regex engines disagree on whether \x1c-\x1f and \x85 are spaces.
PRINCIPAL_PATTERN = r"^[a-z][a-z0-9_-]{0,31}:[^\s,\x00-\x1f\x7f-\x9f]{1,200}$"
# "some text": at least one character that is neither a space nor a control character
SOME_TEXT_PATTERN = r"[^\s\x00-\x1f\x7f-\x9f]"
# dot-separated labels of lowercase letters, digits and '-', each starting and ending with a letter or digit (so
# no '..', '.-' or '-.'); 3 to 63 characters are the schema's min/maxLength
BUCKET_PATTERN = r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$"
# what AWS also refuses, said in JSON Schema as names a bucket is not (``not``): reserved prefixes and suffixes,
# and IP addresses
BUCKET_NOT: dict[str, Any] = {
    "anyOf": [
        {"pattern": "^(xn--|sthree-)"},
        {"pattern": "(-s3alias|--ol-s3|--x-s3)$"},
        {"pattern": "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$"},
    ]
}
# audit actions: "search", "key.create", "collection.update", ...
ACTION_PATTERN = r"^[a-z][a-z_.]{0,31}$"
# ids the service made (documents, jobs, keys, syncs, conversations: 32 hex digits today); no database is
# asked about anything else (Postgres refuses a NUL byte in text with an error of its own)
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

_COLLECTION = re.compile(COLLECTION_PATTERN)
_PRINCIPAL = re.compile(PRINCIPAL_PATTERN)

COLLECTION_RULE = "collection names use letters, digits, '_', '.', '-' (up to 128, starting with a letter or digit)"
PRINCIPAL_RULE = "principals look like 'user:alice' or 'group:hr' (kind:name, no spaces or commas)"


def is_collection(value: str) -> bool:
    return _COLLECTION.fullmatch(value) is not None


def is_principal(value: str) -> bool:
    return _PRINCIPAL.fullmatch(value) is not None
