"""The tests' one Redis fixture: a real connection to the test Redis (TLA_TEST_REDIS_URL)
and a key prefix of the test's own, every key under it removed after the test. `redis`
is the asyncio client, `sredis` a blocking one on the same prefix for tests that drive
subprocesses. Waiting and free ports: tests/support.py."""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from pipeline.keys import Keys

REDIS_URL = os.environ.get("TLA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _dump_tasks(_signum: int, _frame: object) -> None:
    """`kill -USR1 <pytest pid>` prints every asyncio task's stack: a hung test says where."""
    loop = asyncio._get_running_loop()
    for task in asyncio.all_tasks(loop) if loop else ():
        task.print_stack(file=sys.stderr)
    faulthandler.dump_traceback(sys.stderr)


signal.signal(signal.SIGUSR1, _dump_tasks)


# Fixtures that reach the test Redis: a test using any of them is marked `redis`.
REDIS_FIXTURES = frozenset({"redis", "sredis", "redis_url", "spawn", "truth"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


NO_REDIS = "no Redis at {url} ({error}); start one or set TLA_TEST_REDIS_URL"


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as e:  # pragma: no cover - environment problem, say what to do
        pytest.fail(NO_REDIS.format(url=REDIS_URL, error=e))
    yield client
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def sredis(prefix: str) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as e:  # pragma: no cover - environment problem, say what to do
        pytest.fail(NO_REDIS.format(url=REDIS_URL, error=e))
    yield client
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()
