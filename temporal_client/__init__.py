"""The one way to reach Temporal: every process (API, workers, CLI, benchmarks, tests) connects here, so
the namespace, and later the tracing interceptor and the data converter, are set in one place."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from core.errors import Unavailable
from core.settings import Settings


async def connect(settings: Settings) -> Client:
    """A client of the Temporal cluster the settings name (the embedded dev server by default)."""
    return await Client.connect(settings.resolved_temporal_address, namespace=settings.temporal_namespace)


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
                    raise Unavailable(f"Temporal at {self.settings.resolved_temporal_address} is unreachable: {exc}") from exc
            return self._client
