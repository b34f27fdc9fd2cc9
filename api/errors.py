"""Errors a service raises for a user's mistake, each with its HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    status_code = 400
    headers: dict[str, str] | None = None

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Unauthorized(ApiError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class TooLarge(ApiError):
    status_code = 413


class Invalid(ApiError):
    status_code = 422


class TooManyRequests(ApiError):
    status_code = 429


class Unavailable(ApiError):
    status_code = 503
