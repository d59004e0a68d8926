"""A single-holder lease shared by the single-instance stages (the Tempo source's
`<p>tempo:lease`, detect's `<p>incidents:lease`).

A string holding the holder's identity with a TTL, taken with SET NX PX and
renewed/released only by its holder (compare-and-act in Lua, one key: any slot of a
cluster). A holder that dies simply stops renewing; a standby takes over once the TTL
runs out.
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
