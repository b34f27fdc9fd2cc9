"""The access tests' fixtures: settings with Temporal unreachable, and the two-tenant world."""

from __future__ import annotations

import pytest

from testkit.servers import free_port
from testkit.world import make_world


@pytest.fixture
def offline_settings(settings):
    """Temporal is not running: routes that need it could only answer 503, never hang."""
    return settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})


@pytest.fixture
async def world(offline_settings):
    world = await make_world(offline_settings)
    yield world
    for client in (world.owner, world.viewer, world.other, world.reader):
        await client.aclose()
