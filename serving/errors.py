"""How the serving process answers an error: the status code the API would give (`core.errors.http_status`), in
OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`), for domain errors, Starlette's own refusals
and invalid requests alike. OpenAI answers every invalid request with 400, where the API says 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import errors
from serving.protocol import ErrorBody, ErrorResponse

# OpenAI's error type for each status code
TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}
# Documented on the completion routes
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: (
            "Invalid parameters (`param` names the field), or a prompt over the context limit "
            "(`context_length_exceeded`)"
        ),
        401: "Missing, invalid, expired or revoked credentials",
        403: "The credentials lack the `inference` scope",
        404: "No such model (or version, or alias) in your organization",
        503: "The generation failed",
    }.items()
}


def error_body(message: str, status: int = 500, param: str | None = None, code: str | None = None) -> ErrorResponse:
    """OpenAI's error body for an error answered with `status` (a stream that fails mid-answer: `server_error`)."""
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    status = 400 if status == 422 else status
    return JSONResponse(
        status_code=status,
        content=error_body(message, status, param, code).model_dump(),
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


async def domain_error(_: Request, error: errors.DomainError) -> JSONResponse:
    return error_response(errors.http_status(error), error.message, error.param, error.code)


async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (a body that cannot be parsed, an unknown path or method), in OpenAI's shape too."""
    return error_response(error.status_code, str(error.detail))


async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    param = ".".join(str(p) for p in problems[0]["loc"] if p != "body") or None
    messages = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in problems)
    return error_response(400, messages, param)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the serving process answers, in OpenAI's shape."""
    app.exception_handler(errors.DomainError)(domain_error)
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(invalid_request)
