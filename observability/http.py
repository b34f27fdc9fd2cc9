"""The observability of the HTTP processes (the API and the serving process), given by one factory: `/metrics`, each
request counted and timed by its route's template, and a span per request. Plain ASGI: no web framework imported
here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from anyio import to_thread

from observability.metrics import HttpMetrics, exposition

if TYPE_CHECKING:
    from fastapi import FastAPI

# Probes and scrapes get no span each (they come every few seconds).
UNTRACED = ("healthz", "readyz", "metrics")


class MetricsEndpoint:
    """`GET /metrics` as an ASGI app: this process's metrics in Prometheus' text format, after `refresh` (which sets the
    gauges read at scrape time, such as the API's tasks by status) has run in a worker thread."""

    def __init__(self, refresh: Callable[[], None] | None = None):
        self.refresh = refresh

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if self.refresh is not None:
            await to_thread.run_sync(self.refresh)  # a database read: off the event loop
        body, content_type = exposition()
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def instrument_app(app: FastAPI, service: str, refresh: Callable[[], None] | None = None) -> None:
    """Give `app` its `/metrics` (unauthenticated: keep the port on the internal network), the HTTP request metrics
    labelled `service`, and OpenTelemetry spans (recorded only where tracing is configured, `observability.tracing`).
    Call it after the app's other middleware: the metrics middleware is then the outermost and counts every answer,
    refusals included."""
    # loads FastAPI: only an HTTP process calls this
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # Starlette serves an ASGI app given as a route's endpoint as it is; its annotation names request functions only
    endpoint = cast(Any, MetricsEndpoint(refresh))
    app.add_route("/metrics", endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(HttpMetrics, service=service)
    FastAPIInstrumentor.instrument_app(app, excluded_urls=",".join(UNTRACED))
