"""The embedded Valkey store: starts with no Redis configured, keeps data across restarts (AOF)."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from services.embedded import embedded_redis, url_file


async def test_embedded_store_persists_across_restarts(tmp_path: Path) -> None:
    async with embedded_redis(tmp_path) as url:
        assert url_file(tmp_path).read_text().strip() == url
        client = Redis.from_url(url)
        await client.hset("tla:base:{s|e}:1:weekday", mapping={"p50": "1", "count": "60"})
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        await client.aclose()
    assert not url_file(tmp_path).exists()
    assert (tmp_path / "valkey" / "appendonlydir").is_dir()

    async with embedded_redis(tmp_path) as url2:
        client = Redis.from_url(url2)
        assert await client.hgetall("tla:base:{s|e}:1:weekday") == {b"p50": b"1", b"count": b"60"}
        # A second user of the same state folder reuses the running server.
        async with embedded_redis(tmp_path) as url3:
            assert url3 == url2
        assert await client.ping()
        await client.aclose()
