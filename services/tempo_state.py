"""The Tempo source's shared Redis state: the single-poller lease and the watermark.

Lease (`<p>tempo:lease`): a string holding the leader's identity with a TTL, taken with
SET NX PX and renewed/released only by its holder (compare-and-act in Lua). A leader that
dies simply stops renewing; a standby takes over once the TTL runs out.

Watermark (`<p>tempo:watermark`): the last unix second up to which every window was fully
searched and published. It only moves forward (a Lua max), so a stale leader that still
finishes a window can never move it back, and any value written is true: whoever wrote
it did cover that second.
"""

from __future__ import annotations

import os
import socket
import uuid

from redis.asyncio import Redis

from pipeline.keys import Keys

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def identity() -> str:
    """Who holds the lease, readable with `redis-cli GET <p>tempo:lease`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One holder at a time; `ttl_s` bounds how long a dead holder blocks the others."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: float, holder: str | None = None) -> None:
        self.redis = redis
        self.key = keys.tempo_lease
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.holder = holder or identity()
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        """Take the lease if free, or extend it if already ours."""
        if await self.redis.set(self.key, self.holder, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.holder, self.ttl_ms]))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.holder])

    async def holder_now(self) -> str | None:
        value = await self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value


class Watermark:
    """The last fully covered second, shared by every replica."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.tempo_watermark
        self._advance = redis.register_script(_ADVANCE)

    async def get(self) -> int | None:
        value = await self.redis.get(self.key)
        return None if value is None else int(value)

    async def advance(self, second: int) -> bool:
        """Move forward to `second`; False when it already was at or past it."""
        return bool(await self._advance(keys=[self.key], args=[int(second)]))
