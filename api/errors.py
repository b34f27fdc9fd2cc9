"""Errors a service raises for a user's mistake, each with its HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    status_code = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Invalid(ApiError):
    status_code = 422


class TooLarge(ApiError):
    status_code = 413


class Unavailable(ApiError):
    status_code = 503
