"""Types shared by the API's schemas: names, principals, metadata, filters, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.metadata import check_finite, check_metadata
from app.core.patterns import (
    BUCKET_NOT,
    BUCKET_PATTERN,
    COLLECTION_PATTERN,
    ID_PATTERN,
    PRINCIPAL_PATTERN,
    SOME_TEXT_PATTERN,
)

__all__ = ["BUCKET_NOT", "BUCKET_PATTERN", "COLLECTION_PATTERN", "ID_PATTERN", "PRINCIPAL_PATTERN", "SOME_TEXT_PATTERN"]

CollectionName = Annotated[str, Field(pattern=COLLECTION_PATTERN, examples=["hr"])]
Principal = Annotated[str, Field(pattern=PRINCIPAL_PATTERN, examples=["group:hr"])]
# A JSON object of bounded size with finite numbers only (NaN and Infinity are refused with 422).
Metadata = Annotated[
    dict[str, Any],
    AfterValidator(check_metadata),
    Field(description='Your fields, e.g. {"dept": "hr", "year": 2026}; filters match them. At most 16 KiB.'),
]
Scalar = Annotated[str | int | float | bool, AfterValidator(check_finite)]


class AnyOf(BaseModel):
    """Matches documents whose field equals any of the values."""

    model_config = ConfigDict(extra="forbid")

    in_: list[Scalar] = Field(alias="in", min_length=1, max_length=100)


Filters = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=128)], Scalar | AnyOf],
    Field(
        description='Metadata filters: {"key": value} matches equal values, {"key": {"in": [v1, v2]}} any of them.',
        max_length=32,
    ),
]


def filter_values(filters: dict[str, Any]) -> dict[str, Any]:
    """Filters as the stores take them: a scalar (equals) or a list (any of)."""
    return {k: (list(v.in_) if isinstance(v, AnyOf) else v) for k, v in filters.items()}


def aware(v: datetime) -> datetime:
    return v if v.tzinfo else v.replace(tzinfo=UTC)
