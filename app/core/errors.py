"""One error family, mapped in one place to RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status: int = 500
    title: str = "Internal error"
    type_: str = "about:blank"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


class BadInput(AppError):
    status, title = 400, "Bad request"


class Unauthorized(AppError):
    status, title = 401, "Unauthorized"


class Forbidden(AppError):
    status, title = 403, "Forbidden"


class NotFound(AppError):
    status, title = 404, "Not found"


class Conflict(AppError):
    status, title = 409, "Conflict"


class PayloadTooLarge(AppError):
    status, title = 413, "Payload too large"


class UnsupportedMediaType(AppError):
    status, title = 415, "Unsupported media type"


class Unprocessable(AppError):
    status, title = 422, "Unprocessable content"


class RateLimited(AppError):
    status, title = 429, "Too many requests"


class ProviderError(AppError):
    status, title = 502, "Model provider error"


class ProviderUnavailable(AppError):
    status, title = 503, "Service unavailable"


class ProviderTimeout(AppError):
    status, title = 504, "Model provider timed out"


class StoreUnavailable(AppError):
    status, title = 503, "Store unavailable"


class ConfigurationError(Exception):
    """Raised at start-up when settings or stored state cannot work together."""


class MigrationsPending(AppError):
    """The database's schema is older than this code: nothing works until `knowledge-search migrate` ran."""

    status, title = 503, "Database not migrated"
