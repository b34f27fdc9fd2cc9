"""The errors a domain operation raises for a caller's mistake or a missing dependency, defined once.

Services, the access rules and (later) the serving process raise these; each front end maps them to
its own protocol in one place (the HTTP API: `api.errors.STATUS_CODES`). None of them knows HTTP.
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
