"""How the HTTP API answers a domain error: the status code `core.errors.http_status` gives, with a
`{"detail": message}` body."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from core import errors
from schemas.api import ErrorResponse, ValidationErrorResponse

HEADERS: dict[int, dict[str, str]] = {401: {"WWW-Authenticate": "Bearer"}}


async def domain_error_response(_: Request, error: errors.DomainError) -> JSONResponse:
    """The one exception handler for every refused operation."""
    code = errors.http_status(error)
    return JSONResponse(status_code=code, content={"detail": error.message}, headers=HEADERS.get(code))


# Documented on every API route, so clients (and the schemathesis run) know the error bodies.
# Every error is `{"detail": ...}`; 422 replaces FastAPI's default so it also admits our messages.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
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
