"""What the Tempo source tests share: reading the stream, waiting on conditions, metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis
from tempo_fake import FakeTrace, make_traces

from pipeline.keys import Keys
from pipeline.metrics import Metrics
from services.config import Settings
from tests.support import eventually

SettingsFor = Callable[..., Settings]

# Generous bounds for waiting on conditions; never asserted as speeds.
WAIT_S = 30.0


async def entries(redis: Redis, prefix: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _id, fields in await redis.xrange(Keys(prefix).traces)]


async def wait_for(condition: Callable[[], object], what: str) -> None:
    """`tests.support.eventually` with these tests' bound."""
    await eventually(what, condition, timeout_s=WAIT_S)


def by_id(items: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(items, key=lambda e: e["trace_id"])


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def live(n: int, seed: int, **kw: object) -> list[FakeTrace]:
    """Traces that just happened, searchable half a second after they started. Keep
    batches small: a few land in one second, which bisecting cannot split below limit."""
    now = time.time()
    return make_traces(n, now - 0.8, now - 0.2, seed=seed, visible_at=now + 0.3, **kw)
