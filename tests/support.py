"""What every test may need besides fixtures: a free port, and waiting for a condition.

`wait_until` blocks (tests driving subprocesses); `eventually` is its asyncio twin, for
tests whose condition is served by the event loop they run on. Both give up with an
AssertionError naming what they waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Callable

DEFAULT_WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, predicate: Callable[[], object], timeout_s: float = DEFAULT_WAIT_S,
               every_s: float = 0.1) -> object:
    """The first truthy value of `predicate()`, polled every `every_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def eventually(what: str, predicate: Callable[[], object],
                     timeout_s: float = DEFAULT_WAIT_S, every_s: float = 0.05) -> object:
    """`wait_until` on the event loop; `predicate` may also return an awaitable."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
