"""One way to wait for a condition: poll it until it holds or a deadline passes, then say what was last seen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def poll_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], object] = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def poll_until(
    probe: Callable[[], T],
    done: Callable[[T], object] = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def poll_until(
    probe: Callable[[], Any],
    done: Callable[[Any], object] = bool,
    *,
    timeout: float = 30,
    interval: float = 0.1,
    what: str = "the condition",
) -> Any:
    """Call `probe` (sync or async) every `interval` seconds until `done(value)` holds and return that value;
    raise TimeoutError with the last value after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if done(value):
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout} s; last seen {value!r}")
        await asyncio.sleep(interval)


def poll_until_blocking(
    probe: Callable[[], T],
    done: Callable[[T], object] = bool,
    *,
    timeout: float = 30,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """`poll_until` for code without an event loop: sleeps the thread between calls."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout} s; last seen {value!r}")
        time.sleep(interval)
