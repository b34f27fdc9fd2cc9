"""How the HTTP API answers a domain error: one status code per kind, one `{"detail": message}` body."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from core import errors
from schemas.api import ErrorResponse, ValidationErrorResponse

# The most specific class wins: QuotaExceeded is a Conflict (409) too.
STATUS_CODES: dict[type[errors.DomainError], int] = {
    errors.Invalid: 422,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}
HEADERS: dict[int, dict[str, str]] = {401: {"WWW-Authenticate": "Bearer"}}


def status_code(error: errors.DomainError) -> int:
    return next(code for kind in type(error).__mro__ if (code := STATUS_CODES.get(kind)) is not None)


async def domain_error_response(_: Request, error: errors.DomainError) -> JSONResponse:
    """The one exception handler for every refused operation."""
    code = status_code(error)
    return JSONResponse(status_code=code, content={"detail": error.message}, headers=HEADERS.get(code))


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

# The same errors on a route whose success is not JSON (an event stream): documented as JSON explicitly, or FastAPI
# would list them under the route's own media type.
JSON_ERROR_RESPONSES = {
    status: {
        "description": response["description"],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{response['model'].__name__}"}}},
    }
    for status, response in ERROR_RESPONSES.items()
}
