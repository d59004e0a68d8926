"""Consumer-group plumbing shared by the stages: create, read, reclaim, trim, decode."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
# XREAD/XREADGROUP's RESP2 reply: [(stream, [entry, ...]), ...]
StreamReply = list[tuple[bytes, list[Entry]]]
# When Redis cannot tell a group's lag (before 7.0, or after deletions it cannot account
# for), count undelivered entries by reading at most this many IDs.
LAG_SCAN_MAX = 10_000


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create `group` on `stream` (and the stream) from its start; 'already exists' is fine.

    Starting at 0, not $, means entries produced before the first consumer ran are read.
    """
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
        log.info("event=group_created stream=%s group=%s", stream, group)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def leave_group(redis: Redis, stream: str, group: str, consumer: str) -> None:
    """On a clean stop, remove this consumer from the group if it holds nothing pending,
    so `inspect` and XINFO CONSUMERS list only live consumers."""
    for c in await redis.xinfo_consumers(stream, group):
        name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
        if name == consumer and c["pending"] == 0:
            await redis.xgroup_delconsumer(stream, group, consumer)


def is_nogroup(error: Exception) -> bool:
    """The group (or the whole stream) vanished, e.g. Redis restarted without persistence.

    A consumer blocked in XREADGROUP when the stream is deleted gets UNBLOCKED instead.
    """
    return isinstance(error, ResponseError) and str(error).startswith(("NOGROUP", "UNBLOCKED"))


async def read_new(
    redis: Redis, stream: str, group: str, consumer: str, count: int, block_ms: int | None
) -> list[Entry]:
    """Entries never delivered to any consumer of the group (XREADGROUP ... >)."""
    reply = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    return _entries_of(reply)


async def read_own_pending(
    redis: Redis, stream: str, group: str, consumer: str, count: int
) -> list[Entry]:
    """Entries delivered to this consumer name earlier and never acked (a restart).

    Pending entries whose data was trimmed or deleted have nothing to redo: they are acked
    here, or they would stay pending forever and hide the live ones behind them.
    """
    reply = await redis.xreadgroup(group, consumer, {stream: "0"}, count=count)
    entries = _entries_of(reply)
    gone = [i for i, f in entries if not f]
    if gone:
        await redis.xack(stream, group, *gone)
        log.warning("event=pending_entries_deleted stream=%s count=%d", stream, len(gone))
        if len(gone) == len(entries):
            return await read_own_pending(redis, stream, group, consumer, count)
    return [(i, f) for i, f in entries if f]


def _entries_of(reply: object) -> list[Entry]:
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return [e for entries in reply.values() for e in entries[0]]
    return [e for _stream, entries in cast(StreamReply, reply) for e in entries]


@dataclass(frozen=True, slots=True)
class Claimed:
    entries: list[Entry]
    deleted_ids: list[bytes]  # pending entries whose data was trimmed away
    deliveries: dict[bytes, int]


async def autoclaim(
    redis: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
) -> Claimed:
    """Take over entries another (dead) consumer left pending for `min_idle_ms`."""
    reply = await redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    entries: list[Entry] = [(i, f) for i, f in reply[1] if f is not None]
    deleted = list(reply[2]) if len(reply) > 2 else []
    deliveries: dict[bytes, int] = {}
    if entries:
        pending = await redis.xpending_range(
            stream, group, min=entries[0][0], max=entries[-1][0], count=len(entries) * 2,
            consumername=consumer,
        )
        deliveries = {cast(bytes, p["message_id"]): int(p["times_delivered"]) for p in pending}
    return Claimed(entries, deleted, deliveries)


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    undelivered: int  # entries not yet delivered to any consumer of the group
    pending: int  # delivered, not yet acknowledged
    consumers: int = 0

    @property
    def behind(self) -> int:
        return self.undelivered + self.pending


async def group_lags(redis: Redis, stream: str) -> list[GroupLag]:
    """How far behind each group of `stream` is; an absent stream has no groups."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError as e:
        if "no such key" in str(e).lower():
            return []
        raise
    out = []
    for g in groups:
        name = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
        lag = g.get("lag")
        if lag is None:
            last = g["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else str(last)
            tail = await redis.xrange(stream, min=f"({last}", max="+", count=LAG_SCAN_MAX)
            lag = len(cast(list[Entry], tail))
        out.append(GroupLag(name, int(lag), int(g["pending"]), int(g["consumers"])))
    return out


async def safe_trim(redis: Redis, stream: str) -> int:
    """Trim `stream` up to the oldest entry any group still needs; never unread data.

    An entry is still needed while it is pending in a group or not yet delivered to it.
    A stream without groups is left alone (nobody has read it yet).
    """
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return 0
    floor: bytes | None = None
    for g in groups:
        need = g["last-delivered-id"]
        if g["pending"]:
            # Acked since XINFO answered: nothing pending any more (min is then None).
            oldest = (await redis.xpending(stream, g["name"]))["min"]
            if oldest is not None:
                need = min(need, oldest, key=_id_key)
        floor = need if floor is None else min(floor, need, key=_id_key)
    assert floor is not None
    return int(await redis.xtrim(stream, minid=floor, approximate=True))


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
