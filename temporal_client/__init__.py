"""The one way to reach Temporal: every process (API, workers, CLI, benchmarks, tests) connects here, so
the namespace, the tracing interceptor and the metrics runtime are set in one place."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.runtime import Runtime

from core.errors import Unavailable
from core.settings import Settings
from observability.temporal import tracing_interceptor


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client of the Temporal cluster the settings name (the embedded dev server by default). Its tracing
    interceptor also traces the workflows and activities of workers built on it; `runtime` exports their metrics (a
    worker pool's)."""
    return await Client.connect(
        settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=[tracing_interceptor()],
        runtime=runtime,
    )


class TemporalConnection:
    """Connects on first use, so a server starts (and answers /healthz) before Temporal is up; a caller
    that needs Temporal while it is unreachable gets `Unavailable`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self.settings)
                except Exception as exc:  # connection refused, DNS, TLS: all mean the same to a caller
                    raise Unavailable(
                        f"Temporal at {self.settings.resolved_temporal_address} is unreachable: {exc}"
                    ) from exc
            return self._client
