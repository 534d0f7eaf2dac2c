"""Wait for a condition, never for a fixed time: ``wait_until`` (sync, the toolkit's) and ``eventually`` (async)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from deploy.procs import wait_until

__all__ = ["eventually", "wait_until"]

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Await until ``check()`` (sync or async) returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(interval)
