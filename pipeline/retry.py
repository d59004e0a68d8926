"""Bounded exponential backoff with jitter for transient Redis errors in stage loops."""

from __future__ import annotations

import asyncio
import random

from redis import exceptions as redis_errors

# Errors a stage survives by waiting: the server restarts, loads its AOF, or drops us; on
# a cluster also: slots not served while a primary is down or failing over (CLUSTERDOWN,
# TRYAGAIN during a resharding, MOVED/ASK redirections redis-py gave up following, a slot
# no node covers yet, ClusterError "TTL exhausted" after too many of those).
# Not RedisClusterException as a whole: it also covers CrossSlotTransactionError, a
# command with keys in several slots, and "cluster mode is not enabled" — bugs and
# configuration errors that no wait cures; those reach the supervisor (see is_transient
# for the one message-only case kept).
TRANSIENT = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError, OSError,
    redis_errors.ClusterError, redis_errors.ClusterDownError, redis_errors.TryAgainError,
    redis_errors.AskError, redis_errors.MovedError, redis_errors.SlotNotCoveredError,
)
# redis-py raises a bare RedisClusterException when no node of the topology answers
# (redis/asyncio/cluster.py NodesManager.initialize: "Redis Cluster cannot be connected.
# Please provide at least one reachable node", or the slots are not all covered after
# asking every startup node, as during a failover); those are outages, not bugs.
_UNREACHABLE = ("at least one reachable node", "All slots are not covered")


def is_transient(e: BaseException) -> bool:
    """`e` is an outage a stage waits out (TRANSIENT, or redis-py's no-reachable-node)."""
    if isinstance(e, TRANSIENT):
        return True
    return isinstance(e, redis_errors.RedisClusterException) and any(
        m in str(e) for m in _UNREACHABLE)


class Backoff:
    """0.1 s doubling to `cap_s`, full jitter; `reset()` after a success."""

    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay_s(self) -> float:
        delay = min(self.cap_s, self.base_s * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self, stop: asyncio.Event) -> None:
        """Sleep the next delay, returning early when `stop` is set."""
        await sleep_or_stop(stop, self.next_delay_s())


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when woken by `stop`. Raises CancelledError at once when
    the task was cancelled and a callee swallowed it (see `_raise_if_cancelled`).

    asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a cancellation
    that lands in the same loop iteration as `stop` being set (CPython gh-86296, fixed in
    3.12's rewrite), and the cancelled task runs on as if nothing happened."""
    _raise_if_cancelled()
    if stop.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await stop.wait()
    except TimeoutError:
        return False
    return True


def _raise_if_cancelled() -> None:
    """End a task whose cancellation a callee swallowed, at its loop's next wait.

    redis-py writes every command under `asyncio.wait_for(..., socket_timeout)`, and on
    Python 3.11 that returns normally when the task is cancelled just as the write ends
    (gh-86296): the caller never sees the CancelledError, and a stage loop would run on
    for ever (a cancelled Tempo leader kept polling and renewing its lease). The request
    stays counted in `Task.cancelling()` (only `uncancel()`, which wait_for does not
    call, takes it back), so every loop that waits here honours it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError("cancelled earlier; a callee swallowed the CancelledError")
