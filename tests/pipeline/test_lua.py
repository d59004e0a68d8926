"""PackedScript: EVALSHA with arguments packed by hand, NOSCRIPT handled."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from pipeline.lua import PackedScript

pytestmark = pytest.mark.redis


async def test_a_script_redis_has_never_seen_is_loaded_and_run(redis: Redis, prefix: str) -> None:
    # A unique source: its SHA is unknown to the server, so the first call meets NOSCRIPT.
    source = (f"-- {uuid.uuid4().hex}\nredis.call('SET', KEYS[1], ARGV[1])\n"
              "return {#KEYS, unpack(ARGV)}")
    script = PackedScript(redis, source)
    key = f"{prefix}k".encode()
    reply = await script([key], [b"v\r\n\x00", b"", "ü".encode()])
    assert reply == [1, b"v\r\n\x00", b"", "ü".encode()]
    assert await redis.get(key) == b"v\r\n\x00"
    assert await script([key], [b"w"]) == [1, b"w"]  # loaded now: plain EVALSHA
