"""The errors a domain operation raises for a caller's mistake or a missing dependency, defined once.

Services, the access rules and the serving process raise these. Both HTTP front ends answer each kind with the status
`http_status` gives (the one table, `HTTP_STATUS`), each in its own body shape: the API's `{"detail": ...}`
(`api.errors`), the serving process's OpenAI error (`serving.errors`).
"""

from __future__ import annotations


class DomainError(Exception):
    """A refused operation; `message` says what is wrong in words a caller can act on."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param  # the input field at fault, where one is (the serving protocol reports it)
        self.code = code  # a machine-readable reason, where a protocol defines one


class NotFound(DomainError):
    """No such resource in the caller's organization (another tenant's ids are simply not found)."""


class Conflict(DomainError):
    """The request conflicts with the resource's state (e.g. pausing a finished task)."""


class QuotaExceeded(Conflict):
    """An organization's storage quota would be exceeded."""


class Invalid(DomainError):
    """The input is invalid: an unreadable dataset, an unknown model, a bad combination of fields."""


class TooLarge(DomainError):
    """A body or upload is over its size limit."""


class Unauthenticated(DomainError):
    """Missing, invalid, expired or revoked credentials."""


class Forbidden(DomainError):
    """Authenticated, but the role or the API key's scopes do not allow this."""


class RateLimited(DomainError):
    """Too many running tasks, or too many failed logins, for now."""


class Unavailable(DomainError):
    """A service this operation needs (Temporal) is unreachable."""


class Corrupted(DomainError):
    """A stored artifact no longer matches the checksum recorded for it: it is refused, never used."""


# The most specific class wins: QuotaExceeded is a Conflict (409) too.
HTTP_STATUS: dict[type[DomainError], int] = {
    Invalid: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    RateLimited: 429,
    Unavailable: 503,
    Corrupted: 500,  # the platform's fault, said loudly with what failed
}


def http_status(error: DomainError) -> int:
    """The HTTP status code that answers `error` (500 for a kind the table does not name)."""
    return next((code for kind in type(error).__mro__ if (code := HTTP_STATUS.get(kind)) is not None), 500)
