"""Temporal's side of observability: a runtime that serves the SDK's metrics (and the WLOps metrics recorded on its
meter) on a Prometheus port; the interceptors that carry traces across workflows and activities and put each
activity's task, iteration, organization and phase on its logs and its span."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from observability.logs import log_context


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime exporting every metric of this process's clients and workers at http://<bind_address>/metrics."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=bind_address, counters_total_suffix=True, durations_as_seconds=True)
        )
    )


def tracing_interceptor() -> TracingInterceptor:
    """Spans for starting workflows, running them and their activities, linked across processes through Temporal's
    headers; recorded only where a tracer provider is configured (observability.tracing)."""
    return TracingInterceptor()


class TaskContextInterceptor(Interceptor):
    """Every activity runs inside the log context of the task it works for, read from its input dataclass."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TaskContextInbound(next)


class _TaskContextInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        arg = input.args[0] if input.args else None
        # the context is copied into a synchronous activity's thread, so its logs (and the libraries' it calls) carry
        # it too
        with log_context(
            task_id=getattr(arg, "task_id", None),
            iteration=getattr(arg, "iteration", None),
            org_id=getattr(arg, "org_id", None),
            phase=activity.info().activity_type,
        ):
            return await super().execute_activity(input)
