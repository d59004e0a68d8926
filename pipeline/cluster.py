"""What differs on a Redis Cluster (or Valkey cluster): telling one apart, grouping keys by slot.

A Lua call or a MULTI may only touch keys of one hash slot there. Every key of one
(service, endpoint) shares the hash tag `{svc|ep}` (pipeline/keys.py), so per-bucket work
groups by slot; the streams, the service index and the tempo-source state are keys of
their own slots, written by separate commands (docs/guarantees.md argues why no crash
between those commands loses or double-counts anything).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot

T = TypeVar("T")


def is_cluster(redis: Redis) -> bool:
    """True for a cluster client (services/redis_client.py types both as `Redis`)."""
    return isinstance(redis, RedisCluster)


async def ping(redis: Redis) -> bool:
    """The server answers; on a cluster every primary does (a dead one fails its slots)."""
    if is_cluster(redis):
        cluster: RedisCluster = redis  # type: ignore[assignment]
        reply = await cluster.ping(target_nodes=RedisCluster.PRIMARIES)
        return all(reply.values()) if isinstance(reply, dict) else bool(reply)
    return bool(await redis.ping())


def by_slot(items: Iterable[T], key: Callable[[T], bytes | str]) -> dict[int, list[T]]:
    """`items` grouped by the hash slot of `key(item)`, each group in the items' order."""
    out: dict[int, list[T]] = {}
    for item in items:
        k = key(item)
        out.setdefault(key_slot(k.encode() if isinstance(k, str) else k), []).append(item)
    return out
