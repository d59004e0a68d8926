"""The one way to call Lua: scripts shipped as package data, called with EVALSHA through
`PackedScript`, whose arguments are packed here, not by redis-py.

redis-py packs each argument through a generic encoder and re-joins a growing buffer:
~2 us per argument, over 5 us per event for ingest's batches of ~2,000 arguments, more
than the script's own per-event work in Redis. Ingest hands over bytes only, so packing is
one format per argument. The command goes over a pooled connection the way redis-py
sends its own (same timeouts, health checks and retries); a script missing after a Redis
restart (NOSCRIPT) is loaded and the call repeated once. On a Redis Cluster the call goes
through the cluster client instead (it routes by the keys' slot, all of which must be one
slot, and follows MOVED/ASK); a new primary after a failover answers NOSCRIPT the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from pipeline.cluster import is_cluster

# Calls of `many` in flight at once: enough to keep every primary of a cluster busy.
MANY_IN_FLIGHT = 32


def read_script(package: str | None, name: str) -> str:
    """The Lua file `name` shipped beside the modules of `package` (pass `__package__`)."""
    if not package:
        raise ValueError("read_script needs the caller's package (__package__)")
    return files(package).joinpath(name).read_text(encoding="utf-8")


class PackedScript:
    def __init__(self, redis: Redis, source: str) -> None:
        self.redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._head = b"$7\r\nEVALSHA\r\n$40\r\n" + self.sha.encode() + b"\r\n"

    async def __call__(self, keys: list[bytes], args: list[bytes]) -> Any:
        if is_cluster(self.redis):
            return await self._cluster_call(keys, args)
        return await self.call_packed(self.pack(keys, args))

    async def call_packed(self, packed: bytes) -> Any:
        """Send a command `pack` built earlier (one node only; a cluster routes by key)."""
        try:
            return await self._send(packed)
        except NoScriptError:
            await self.redis.script_load(self.source)
            return await self._send(packed)

    async def many(self, calls: list[tuple[list[bytes], list[bytes]]]) -> list[Any]:
        """Several calls at once (a cluster's per-slot calls), at most MANY_IN_FLIGHT in
        flight: the cluster client opens a connection per call in flight, up to 100 per
        node. (Its pipelines refuse EVALSHA.)"""
        gate = asyncio.Semaphore(MANY_IN_FLIGHT)

        async def one(keys: list[bytes], args: list[bytes]) -> Any:
            async with gate:
                return await self(keys, args)

        return list(await asyncio.gather(*(one(k, a) for k, a in calls)))

    async def _cluster_call(self, keys: list[bytes], args: list[bytes]) -> Any:
        """EVALSHA through the cluster client (SCRIPT LOAD goes to every primary)."""
        try:
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.redis.script_load(self.source)
            return await self.redis.evalsha(self.sha, len(keys), *keys, *args)

    def pack(self, keys: list[bytes], args: list[bytes]) -> bytes:
        """The whole EVALSHA command in RESP."""
        n_keys = b"%d" % len(keys)
        return b"".join([
            b"*%d\r\n" % (3 + len(keys) + len(args)), self._head,
            b"$%d\r\n%b\r\n" % (len(n_keys), n_keys),
            *[b"$%d\r\n%b\r\n" % (len(k), k) for k in keys],
            *[b"$%d\r\n%b\r\n" % (len(a), a) for a in args],
        ])

    async def _send(self, packed: bytes) -> Any:
        """Send and read the reply, retried on connection errors as redis-py does (safe:
        a script that ran without its reply reaching us is idempotent for ingest)."""
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]

        async def exchange() -> Any:
            await conn.send_packed_command(packed)
            return await conn.read_response()

        async def reset(_error: Exception) -> None:
            await conn.disconnect()

        try:
            return await conn.retry.call_with_retry(exchange, reset)
        finally:
            await pool.release(conn)
