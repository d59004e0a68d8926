"""XADD a batch of trace events to `<p>traces` in one round trip."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from pipeline.errors import StoreUnavailable
from pipeline.events import TraceEvent, to_fields
from pipeline.keys import Keys
from pipeline.retry import TRANSIENT


class StoreFull(StoreUnavailable):
    """Redis refused writes (OOM: `maxmemory` reached): the sender should slow down."""


async def publish(redis: Redis, keys: Keys, events: list[TraceEvent]) -> None:
    """Every event or, on a Redis error, StoreUnavailable (StoreFull when Redis is out of
    memory); then some may have been added, and a retry adds them again: ingest's dedup
    counts each trace once."""
    if not events:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(keys.traces, to_fields(event))  # type: ignore[arg-type]
            await pipe.execute()
    except OutOfMemoryError as e:
        raise StoreFull(f"Redis is out of memory: {e}") from e
    except ResponseError as e:
        if "maxmemory" in str(e):  # a pipeline reports OOM in its own ResponseError
            raise StoreFull(f"Redis is out of memory: {e}") from e
        raise StoreUnavailable(f"Redis refused the trace events: {e}") from e
    except (*TRANSIENT, RedisError) as e:
        raise StoreUnavailable(f"Redis did not take the trace events: {e!r}") from e
