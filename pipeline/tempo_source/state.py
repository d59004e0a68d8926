"""The Tempo source's shared Redis state: the single-poller lease and the watermark.

Lease (`<p>tempo:lease`): a string holding the leader's identity with a TTL, taken with
SET NX PX and renewed/released only by its holder (compare-and-act in Lua). A leader that
dies simply stops renewing; a standby takes over once the TTL runs out.

Watermark (`<p>tempo:watermark`): the last unix second up to which every window was fully
searched and published. It only moves forward (a Lua max), so a stale leader that still
finishes a window can never move it back, and any value written is true: whoever wrote
it did cover that second.

Coverage (`<p>tempo:covered`): every range of trace start times that was fully searched
and published, by the live source or a backfill, as disjoint intervals (a ZSET, member
"start-end", score start; merged in Lua as ranges are added). Backfill skips what it
holds: ingest's dedup only remembers trace IDs for 15 minutes, so searching a range
again later would count its traces twice. Outages leave gaps in it, which a backfill
then fills.
"""

from __future__ import annotations

import os
import socket
import uuid

from redis.asyncio import Redis

from pipeline.keys import Keys
from pipeline.lua import PackedScript, read_script

# The compare-and-act steps, in Lua beside this module.
RENEW_LUA = read_script(__package__, "lease_renew.lua")
RELEASE_LUA = read_script(__package__, "lease_release.lua")
ADVANCE_LUA = read_script(__package__, "watermark_advance.lua")
COVER_LUA = read_script(__package__, "coverage_add.lua")
# Intervals kept: an outage now and then adds one; past this the oldest are dropped
# (a backfill of that far back would then search them again).
MAX_INTERVALS = 10_000


def identity() -> str:
    """Who holds the lease, readable with `redis-cli GET <p>tempo:lease`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One holder at a time; `ttl_s` bounds how long a dead holder blocks the others."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: float, holder: str | None = None,
                 key: str | None = None) -> None:
        """`key`: another single-instance stage's lease (default: the Tempo source's)."""
        self.redis = redis
        self.key = key or keys.tempo_lease
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.holder = holder or identity()
        self._key_b = [self.key.encode()]
        self._holder_b = self.holder.encode()
        self._renew = PackedScript(redis, RENEW_LUA)
        self._release = PackedScript(redis, RELEASE_LUA)

    async def acquire(self) -> bool:
        """Take the lease if free, or extend it if already ours."""
        if await self.redis.set(self.key, self.holder, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        return bool(await self._renew(self._key_b, [self._holder_b, b"%d" % self.ttl_ms]))

    async def release(self) -> None:
        await self._release(self._key_b, [self._holder_b])

    async def holder_now(self) -> str | None:
        value = await self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class Watermark:
    """The last fully covered second, shared by every replica."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.tempo_watermark
        self._advance = PackedScript(redis, ADVANCE_LUA)

    async def get(self) -> int | None:
        value = await self.redis.get(self.key)
        return None if value is None else int(value)

    async def advance(self, second: int) -> bool:
        """Move forward to `second`; False when it already was at or past it."""
        return bool(await self._advance([self.key.encode()], [b"%d" % int(second)]))


class Coverage:
    """The ranges of trace start times already published (see the module docstring)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.tempo_covered
        self._cover = PackedScript(redis, COVER_LUA)

    async def add(self, start_s: int, end_s: int) -> None:
        if end_s <= start_s:
            return
        count = int(await self._cover([self.key.encode()],
                                      [b"%d" % int(start_s), b"%d" % int(end_s)]))
        if count > MAX_INTERVALS:
            await self.redis.zremrangebyrank(self.key, 0, count - MAX_INTERVALS - 1)

    async def intervals(self) -> list[tuple[int, int]]:
        """Every covered interval, oldest first."""
        out = []
        for member in await self.redis.zrange(self.key, 0, -1):
            start, _, end = str(member.decode() if isinstance(member, bytes) else member
                                ).partition("-")
            out.append((int(start), int(end)))
        return out

    async def gaps(self, start_s: int, end_s: int) -> list[tuple[int, int]]:
        """The parts of [start_s, end_s] not covered yet, oldest first."""
        return uncovered(start_s, end_s, await self.intervals())


def uncovered(start_s: int, end_s: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start_s, end_s] minus the (sorted, disjoint) covered intervals."""
    out, at = [], start_s
    for cs, ce in covered:
        if ce <= at:
            continue
        if cs >= end_s:
            break
        if cs > at:
            out.append((at, cs))
        at = max(at, ce)
    if at < end_s:
        out.append((at, end_s))
    return out
