"""Observability: structured logs with each task's context, OpenTelemetry tracing (off unless the standard `OTEL_`
variables ask for it), and the Prometheus metrics of every process."""

from __future__ import annotations

from core.settings import Settings


def configure_process(service: str, settings: Settings) -> None:
    """What each long-running process (`wlops api | serve | worker`) sets up at start: its logs and, if asked for,
    traces."""
    from observability.logs import configure_logging
    from observability.tracing import configure_tracing

    configure_logging(service, settings.log_level, json_lines=settings.log_format == "json")
    configure_tracing(service)
