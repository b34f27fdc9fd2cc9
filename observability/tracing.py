"""OpenTelemetry tracing, configured by the standard `OTEL_` environment variables and off by default.

`OTEL_TRACES_EXPORTER=otlp` (or just `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) sends spans
over OTLP/HTTP, `console` prints them; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process;
`OTEL_SDK_DISABLED=true` turns everything off. Database calls (the sqlite3 and psycopg drivers under SQLAlchemy: the
SQLAlchemy instrumentation does not support SQLAlchemy 2.1 yet) and object-storage requests (urllib3, under the MinIO
client) get spans of their own.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


def chosen_exporter(environ=os.environ) -> str | None:
    """`otlp`, `console`, or None (tracing off), as the standard variables say."""
    if environ.get(OTEL_SDK_DISABLED, "").lower() == "true":
        return None
    name = environ.get(OTEL_TRACES_EXPORTER)
    if name is None:
        return (
            "otlp"
            if environ.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or environ.get(OTEL_EXPORTER_OTLP_ENDPOINT)
            else None
        )
    return None if name == "none" else name


def configure_tracing(service: str, processor: SpanProcessor | None = None) -> bool:
    """Install this process's tracer provider if the environment asks for traces (or a `processor` is given, as a test
    does) and instrument database and storage calls; False (and nothing installed) when tracing is off."""
    exporter = chosen_exporter()
    if exporter is None and processor is None:
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get(OTEL_SERVICE_NAME, f"wlops-{service}")})
    )
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter is not None:
        raise ValueError(f"{OTEL_TRACES_EXPORTER}={exporter!r}: WLOps exports traces with otlp or console (or none)")
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    instrument_clients()
    return True


def client_instrumentors() -> list:
    """The instrumentations of the database drivers and of urllib3 (imported here: only a process that traces loads
    them)."""
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    return [SQLite3Instrumentor(), PsycopgInstrumentor(), URLLib3Instrumentor()]


def instrument_clients() -> None:
    """Spans for every database query and every object-storage request of the process."""
    for instrumentor in client_instrumentors():
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
