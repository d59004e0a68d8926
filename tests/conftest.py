"""Shared fixtures: a real Redis connection and a unique key prefix per test, cleaned after."""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
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


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def keys(prefix: str) -> Keys:
    return Keys(prefix)


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as e:  # pragma: no cover - environment problem, say what to do
        pytest.fail(f"no Redis at {REDIS_URL} ({e}); start one or set TLA_TEST_REDIS_URL")
    yield client
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()
