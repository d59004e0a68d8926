"""Stage loops' waits: they end on stop or timeout, and never swallow a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.retry import Backoff, sleep_or_stop


async def test_sleep_or_stop_tells_stop_from_timeout() -> None:
    stop = asyncio.Event()
    assert await sleep_or_stop(stop, 0.01) is False
    stop.set()
    assert await sleep_or_stop(stop, 10) is True


async def test_a_cancel_in_the_same_iteration_as_stop_is_not_swallowed() -> None:
    """asyncio.wait_for on Python 3.11 returns normally here (CPython gh-86296): the task
    that was cancelled at shutdown would run on."""
    stop = asyncio.Event()
    task = asyncio.create_task(sleep_or_stop(stop, 10))
    await asyncio.sleep(0)  # the task is waiting
    stop.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_backoff_doubles_within_its_cap_and_resets() -> None:
    b = Backoff(base_s=0.1, cap_s=0.5)
    delays = [b.next_delay_s() for _ in range(6)]
    assert all(0.05 <= d <= 0.5 for d in delays) and delays[-1] >= 0.25
    b.reset()
    assert b.next_delay_s() <= 0.1
