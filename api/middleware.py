"""ASGI middleware: request-body limits and NUL checks before anything is parsed, the audit log of every mutation, and
security headers (a strict Content-Security-Policy on the console's pages)."""

from __future__ import annotations

import json
import logging
import re

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

from db.models import AuditEntry

log = logging.getLogger(__name__)

MUTATIONS = {"POST", "PUT", "PATCH", "DELETE"}
# POST routes that change nothing (a search takes a body): not audited, and a viewer may call them.
READ_ONLY_ROUTES = {("POST", "/api/v1/knowledge-bases/{kb_id}/search")}
MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries around an upload's bytes
# Routes whose body is an upload, each with the name of the setting that limits it.
UPLOAD_ROUTES = {
    ("POST", re.compile(r"/api/v1/datasets/?")): "max_upload_bytes",
    ("POST", re.compile(r"/api/v1/knowledge-bases/[^/]+/documents/?")): "max_document_bytes",
}
RESOURCE_PARAMS = (
    ("run_id", "suite_run"),
    ("suite_name", "suite"),
    ("entry_id", "qa_entry"),
    ("gate_id", "promotion_gate"),
    ("alias", "model_alias"),
    ("version", "model_version"),
    ("model_name", "model"),
    ("document_id", "document"),
    ("kb_id", "knowledge_base"),
    ("key_id", "api_key"),
    ("user_id", "member"),
    ("task_id", "task"),
    ("dataset_id", "dataset"),
    ("org_id", "organization"),
)
# The console's pages and assets (served by api.main): only our own scripts, styles and API; no inline script, no
# framing.
CONSOLE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class BodyLimit:
    """Refuse bodies over the limit with 413: by Content-Length up front, and by counting streamed chunks."""

    def __init__(self, app, settings):
        self.app = app
        self.request_bytes = settings.max_request_bytes
        self.uploads = [
            (method, path, getattr(settings, limit) + MULTIPART_OVERHEAD)
            for (method, path), limit in UPLOAD_ROUTES.items()
        ]

    def limit(self, method: str, path: str) -> int:
        return next(
            (limit for m, pattern, limit in self.uploads if m == method and pattern.fullmatch(path)), self.request_bytes
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _send_json(send, 413, f"request body is larger than the {limit} byte limit")
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # FastAPI passes HTTPExceptions raised while reading the body through
                    raise HTTPException(413, f"request body is larger than the {limit} byte limit")
            return message

        return await self.app(scope, counting_receive, send)


class RejectNul:
    """422 for a NUL character in the path or query string: PostgreSQL cannot store or compare text with NUL, so
    such an id or filter would otherwise fail deep in a query (request bodies are checked by their models)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]
        ):
            return await _send_json(send, 422, "the path and query parameters must not contain NUL characters")
        return await self.app(scope, receive, send)


class AuditLog:
    """One `audit_log` row per mutating request (any outcome), after the response: who (user, API key),
    what (method and route template), which resource (path ids, or the Location of what was created),
    the status, when and from where. Login attempts are recorded too."""

    def __init__(self, app, sessions):
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in MUTATIONS:
            return await self.app(scope, receive, send)
        outcome = {"status": 500, "location": None}

        async def recording_send(message):
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                outcome["location"] = dict(message.get("headers", [])).get(b"location")
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            await run_in_threadpool(self._record, scope, outcome)  # a database write: keep it off the event loop

    def _record(self, scope, outcome) -> None:
        route = scope.get("route")
        # no such route, or one that changes nothing
        if route is None or (scope["method"], route.path) in READ_ONLY_ROUTES:
            return
        caller = scope.get("state", {}).get("caller")
        params = scope.get("path_params") or {}
        # the innermost id in the path names the resource; a creation names it in Location
        resource_type, resource_id = next(
            ((kind, str(params[name])[:200]) for name, kind in RESOURCE_PARAMS if name in params), (None, None)
        )
        if outcome["location"] and 200 <= outcome["status"] < 300:
            resource_type, resource_id = (
                _kind_from_path(route.path),
                outcome["location"].decode().split("?", 1)[0].rsplit("/", 1)[-1][:200],
            )
        client = scope.get("client")
        entry = AuditEntry(
            org_id=getattr(caller, "org_id", None),
            actor_user_id=getattr(caller, "user_id", None),
            actor_key_id=getattr(caller, "api_key_id", None),
            action=f"{scope['method']} {route.path}",
            resource_type=resource_type,
            resource_id=resource_id,
            status_code=outcome["status"],
            client_ip=client[0] if client else None,
        )
        try:
            with self.sessions() as session:
                session.add(entry)
                session.commit()
        except Exception:  # the audit must never turn a finished request into an error
            log.exception(
                "could not write the audit entry %s", json.dumps({"action": entry.action, "status": entry.status_code})
            )


class SecurityHeaders:
    """`X-Content-Type-Options: nosniff` on every answer; the console (`/`, `/console/...`) also gets its strict
    Content-Security-Policy and may not be framed. /docs keeps FastAPI's Swagger page as it is (it loads from a CDN)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        console = scope["path"] == "/" or scope["path"].startswith("/console/")

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if console:
                    headers["Content-Security-Policy"] = CONSOLE_POLICY
                    headers["Cache-Control"] = (
                        "no-cache"  # revalidated (ETag) on each load: a new version is never mixed with an old one
                    )
                    headers["X-Frame-Options"] = "DENY"
                    headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        return await self.app(scope, receive, with_headers)


def _kind_from_path(path: str) -> str | None:
    """The kind of resource a creation route makes, from its path."""
    for fragment, kind in (
        ("/suites/{suite_name}/runs", "suite_run"),
        ("/suites", "suite"),
        ("/versions", "model_version"),
        ("/documents", "document"),
        ("/knowledge-bases", "knowledge_base"),
        ("/api-keys", "api_key"),
        ("/members", "member"),
        ("/tasks", "task"),
        ("/datasets", "dataset"),
        ("/orgs", "organization"),
    ):
        if fragment in path:
            return kind
    return None


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
