"""Connecting to a cluster: seeds, auto mode, and the stages' plain commands across slots."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from pipeline.cluster import is_cluster
from pipeline.errors import ConfigError
from pipeline.keys import Keys
from pipeline.lease import Lease
from pipeline.tempo_source.state import Coverage, Watermark
from services.redis_client import connect, open_redis, redact, seeds
from tests.cluster.servers import LocalCluster
from tests.conftest import REDIS_URL


def test_seeds_take_hosts_or_whole_urls() -> None:
    assert seeds("redis://u:pw@h1:1,h2:2/0?ssl_cert_reqs=none") == [
        "redis://u:pw@h1:1/0?ssl_cert_reqs=none", "redis://u:pw@h2:2/0?ssl_cert_reqs=none"]
    assert seeds("redis://h1:1, rediss://h2:2") == ["redis://h1:1", "rediss://h2:2"]
    assert seeds("redis://h1:1/0") == ["redis://h1:1/0"]
    assert redact("redis://u:pw@h1:1,h2:2") == "redis://u:***@h1:1,redis://u:***@h2:2"


def test_several_nodes_in_standalone_mode_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="TLA_REDIS_MODE=cluster"):
        connect("redis://h1:1,h2:2", mode="standalone")
    with pytest.raises(ConfigError, match="databases other than 0"):
        connect("redis://h1:1/3", mode="cluster")


async def test_auto_mode_asks_the_server(cluster: LocalCluster) -> None:
    one_node = f"redis://127.0.0.1:{cluster.nodes[1].port}"
    on_cluster = await open_redis(one_node, "auto")
    on_single = await open_redis(REDIS_URL, "auto")
    try:
        assert is_cluster(on_cluster) and not is_cluster(on_single)
        # Any node is enough: the client learns every primary and follows MOVED.
        for i in range(50):
            await on_cluster.set(f"test:conn:{i}", i, ex=60)
        assert [int(v) for v in await on_cluster.mget_nonatomic(
            [f"test:conn:{i}" for i in range(50)])] == list(range(50))
        assert await on_cluster.delete(*[f"test:conn:{i}" for i in range(50)]) == 50
    finally:
        await on_cluster.aclose()
        await on_single.aclose()


async def test_auto_mode_without_a_server_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no Redis answered"):
        await open_redis("redis://127.0.0.1:1", "auto")


async def test_fixture_client_is_a_cluster(redis: Redis) -> None:
    assert is_cluster(redis)


async def test_ready_means_every_primary_answers(redis: Redis) -> None:
    from pipeline.cluster import ping

    assert await ping(redis)


async def test_tempo_source_state_works_on_a_cluster(redis: Redis, keys: Keys) -> None:
    """The lease, watermark and covered ranges: one key each, one-key scripts."""
    a, b = Lease(redis, keys, 10, "a"), Lease(redis, keys, 10, "b")
    assert await a.acquire() and not await b.acquire()
    assert await a.renew() and await a.holder_now() == "a"
    await a.release()
    assert await b.acquire()
    mark = Watermark(redis, keys)
    assert await mark.advance(100) and not await mark.advance(50) and await mark.get() == 100
    covered = Coverage(redis, keys)
    await covered.add(0, 10)
    await covered.add(10, 20)
    assert await covered.intervals() == [(0, 20)]
    assert await covered.gaps(0, 30) == [(20, 30)]
