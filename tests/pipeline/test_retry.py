"""Stage loops' waits: they end on stop or timeout, and never swallow a cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest

from redis import exceptions as redis_errors
from redis.asyncio import RedisCluster

from pipeline.retry import Backoff, is_transient, sleep_or_stop
from services.redis_client import connect
from tests.support import free_port

# Bounds a wait for a task that should end; never asserted as a speed.
END_S = 5.0


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


async def test_a_cancellation_a_callee_swallowed_ends_the_loop_at_its_next_wait() -> None:
    """The callee returns normally from a cancellation, as Python 3.11's wait_for does
    when its inner future has just finished (gh-86296)."""
    stop, inside = asyncio.Event(), asyncio.Event()

    async def swallowing_call() -> None:
        inside.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # no uncancel(): the request stays counted, as with wait_for

    async def stage() -> None:
        while True:
            await swallowing_call()
            await sleep_or_stop(stop, 10)

    task = asyncio.create_task(stage())
    await inside.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=END_S)
    assert done and task.cancelled()


async def test_a_stage_loop_ends_when_redis_swallows_its_cancellation(
    redis_url: str, prefix: str,
) -> None:
    """redis-py writes each command under asyncio.wait_for(..., socket_timeout): on Python
    3.11 a cancellation landing as the write ends is swallowed (about one in three of
    these). A loop of commands and waits must still end every time, cancelled."""
    redis, stop, rng = connect(redis_url), asyncio.Event(), random.Random(11)

    async def stage() -> None:
        while True:
            await redis.get(f"{prefix}probe")
            await sleep_or_stop(stop, 0)

    try:
        for _ in range(100):
            task = asyncio.create_task(stage())
            for _ in range(rng.randrange(40)):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=END_S)
            assert done and task.cancelled()
    finally:
        await redis.aclose()


def test_backoff_doubles_within_its_cap_and_resets() -> None:
    b = Backoff(base_s=0.1, cap_s=0.5)
    delays = [b.next_delay_s() for _ in range(6)]
    assert all(0.05 <= d <= 0.5 for d in delays) and delays[-1] >= 0.25
    b.reset()
    assert b.next_delay_s() <= 0.1


@pytest.mark.parametrize("error", [
    redis_errors.ConnectionError("reset"), redis_errors.TimeoutError("slow"),
    redis_errors.BusyLoadingError("loading"), ConnectionRefusedError(),
    redis_errors.ClusterDownError("CLUSTERDOWN"), redis_errors.MasterDownError("MASTERDOWN"),
    redis_errors.TryAgainError("TRYAGAIN"), redis_errors.AskError("1 127.0.0.1:7000"),
    redis_errors.MovedError("1 127.0.0.1:7000"), redis_errors.ClusterError("TTL exhausted."),
    redis_errors.SlotNotCoveredError('Slot "1" not covered by the cluster.'),
])
def test_outages_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    redis_errors.CrossSlotTransactionError("All keys involved in a cluster transaction "
                                           "must map to the same slot"),
    redis_errors.RedisClusterException("EVALSHA - all keys must map to the same key slot"),
    redis_errors.RedisClusterException("Cluster mode is not enabled on this node"),
    redis_errors.ResponseError("WRONGTYPE"), redis_errors.NoPermissionError("NOPERM"),
    ValueError("bug"),
])
def test_bugs_and_configuration_errors_reach_the_supervisor(error: Exception) -> None:
    assert not is_transient(error)


async def test_no_reachable_cluster_node_is_transient() -> None:
    """What redis-py itself raises when no seed node answers (its message is matched)."""
    client = RedisCluster(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    with pytest.raises(redis_errors.RedisClusterException) as raised:
        await client.initialize()
    await client.aclose()
    assert not isinstance(raised.value, redis_errors.ConnectionError)
    assert is_transient(raised.value), raised.value
