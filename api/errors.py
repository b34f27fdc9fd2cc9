"""Errors a service raises for a user's mistake, each with its HTTP status."""

from __future__ import annotations


from schemas.api import ErrorResponse, ValidationErrorResponse


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


# Documented on every API route, so clients (and the schemathesis run) know the error bodies.
# Every error is `{"detail": ...}`; 422 replaces FastAPI's default so it also admits our messages.
ERROR_RESPONSES = {
    status: {"model": ValidationErrorResponse if status == 422 else ErrorResponse, "description": description}
    for status, description in {
        400: "The body could not be parsed (e.g. JSON that is not UTF-8)",
        401: "Missing, invalid, expired or revoked credentials",
        403: "Authenticated, but the role or API key scopes do not allow this",
        404: "No such resource in your organization",
        409: "The request conflicts with the resource's state or a quota",
        413: "The body or upload is over its size limit",
        422: "Invalid input: a message, or the fields that failed validation",
        429: "Too many running tasks or failed logins",
        503: "Temporal is unreachable",
    }.items()
}
