"""The Tempo source's shared Redis state: the watermark and the coverage (its single-poller
lease `<p>tempo:lease` is a pipeline.lease.Lease).

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

from redis.asyncio import Redis

from pipeline.keys import Keys
from pipeline.lua import PackedScript, read_script

# The compare-and-act steps, in Lua beside this module.
ADVANCE_LUA = read_script(__package__, "watermark_advance.lua")
COVER_LUA = read_script(__package__, "coverage_add.lua")
# Intervals kept: an outage now and then adds one; past this the oldest are dropped
# (a backfill of that far back would then search them again).
MAX_INTERVALS = 10_000


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
