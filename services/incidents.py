"""`GET /v1/incidents`: the incidents the detect stage keeps (pipeline/incidents), read
from their hashes and indexes, as JSON (OpenAPI `Incident`), newest first."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Protocol, TypedDict, cast

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from pipeline.buckets import MAX_SERVICE_CHARS, escape
from pipeline.errors import InvalidEvent, StoreUnavailable
from pipeline.events import check_name
from pipeline.keys import Keys
from services.http import int_param, json_response

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Ids read from an index per page, and at most per index and request: bounds the work of
# one request whatever the retention keeps (TLA_INCIDENTS_RETENTION_DAYS).
PAGE = 500
MAX_SCANNED = 10_000
STATES = ("open", "all")


class IncidentJson(TypedDict):
    """One incident (OpenAPI `Incident`); times are unix ms of event time."""

    id: str
    service: str
    endpoint: str
    state: str  # open | closed
    startedMs: int
    endedMs: int | None
    updatedMs: int
    reason: str
    requests: int
    aboveP95: int
    shareAboveP95: float
    medianMs: float
    p50Ms: float
    p95Ms: float
    degradedIntervals: int


class IncidentsContext(Protocol):
    @property
    def redis(self) -> Redis: ...

    @property
    def keys(self) -> Keys: ...


def incident_json(raw: Mapping[bytes, bytes]) -> IncidentJson:
    f = {k.decode(): v.decode() for k, v in raw.items()}
    return {
        "id": f["id"], "service": f["service"], "endpoint": f["endpoint"],
        "state": "closed" if f["state"] == "closed" else "open",
        "startedMs": int(f["started_ms"]),
        "endedMs": int(f["ended_ms"]) if "ended_ms" in f else None,
        "updatedMs": int(f["updated_ms"]), "reason": f["reason"],
        "requests": int(f["requests"]), "aboveP95": int(f["above_p95"]),
        "shareAboveP95": float(f["share_above_p95"]), "medianMs": float(f["median_ms"]),
        "p50Ms": float(f["p50_ms"]), "p95Ms": float(f["p95_ms"]),
        "degradedIntervals": int(f["degraded_intervals"]),
    }


async def read_incidents(redis: Redis, keys: Keys, state: str = "all", since_ms: int = 0,
                         service: str | None = None, limit: int = DEFAULT_LIMIT
                         ) -> list[IncidentJson]:
    """Open incidents, and with state "all" those closed at or after `since_ms` too (an
    incident is listed when it was open at some time since then), newest start first.

    Bounded work per request whatever the retention holds: the indexes are read newest
    first in pages (`ZREVRANGEBYSCORE ... LIMIT`), the service and the start time are
    read from the id (`{svc|ep}:<started_ms>`), so only the `limit` incidents returned
    are fetched (HGETALL). The closed index is scored by end, and an incident ends after
    it starts: once a page's ends fall below the `limit`-th newest start kept, nothing
    older can enter, and the scan stops. At most MAX_SCANNED ids per index are looked at
    (a rare service among many incidents: narrow `since` to reach further back)."""
    prefix = f"{{{escape(service)}|" if service is not None else None
    best: list[tuple[int, str]] = []  # min-heap of (started_ms, id): the `limit` newest
    offered: set[str] = set()  # an id moving between pages (or indexes) counts once

    def offer(incident_id: str) -> None:
        if incident_id in offered or (prefix is not None and not incident_id.startswith(prefix)):
            return
        offered.add(incident_id)
        started = _started_ms(incident_id)
        if started is None:
            return
        item = (started, incident_id)
        if len(best) < limit:
            heapq.heappush(best, item)
        elif item > best[0]:
            heapq.heapreplace(best, item)

    try:
        # Newest start first; stop once a start is older than every start kept.
        await _scan(redis, keys.incidents_open, "-inf", offer,
                    lambda start: len(best) == limit and start < best[0][0])
        if state == "all":
            # Newest end first; stop once an end is older than every start kept.
            await _scan(redis, keys.incidents_closed, since_ms, offer,
                        lambda end: len(best) == limit and end < best[0][0])
        ids = [incident_id for _started, incident_id in sorted(best, reverse=True)]
        async with redis.pipeline(transaction=False) as pipe:
            for incident_id in ids:
                pipe.hgetall(keys.incident(incident_id))
            found = await pipe.execute() if ids else []
    except (RedisError, RedisClusterException, OSError) as e:
        raise StoreUnavailable(f"incident store unavailable: {e.__class__.__name__}") from e
    return [incident_json(raw) for raw in found if raw]


async def _scan(redis: Redis, key: str, low: int | str, offer: Callable[[str], None],
                done: Callable[[float], bool]) -> None:
    """Offer the ids of ZSET `key` scored `low` or more, highest score first, PAGE at a
    time, until `done(score)`, the end, or MAX_SCANNED ids (offsets stay small, so every
    page costs O(log N + MAX_SCANNED) at worst)."""
    offset = 0
    while offset < MAX_SCANNED:
        page = cast(list[tuple[bytes, float]], await redis.zrevrangebyscore(
            key, "+inf", low, start=offset, num=PAGE, withscores=True))
        for member, score in page:
            if done(score):
                return
            offer(member.decode())
        if len(page) < PAGE:
            return
        offset += PAGE


def _started_ms(incident_id: str) -> int | None:
    """The start time an id (`{svc|ep}:<started_ms>`) carries."""
    text = incident_id.rpartition(":")[2]
    return int(text) if text.isdecimal() else None


async def list_incidents(ctx: IncidentsContext, request: web.BaseRequest) -> web.Response:
    q = request.query
    state = q.get("state", "all")
    if state not in STATES:
        raise InvalidEvent("state", f"must be 'open' or 'all', got {state[:30]!r}")
    since_ms = int_param(q, "since", 0, 0, 2**63 - 1)
    limit = int_param(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    service = q.get("service")
    if service is not None:
        try:
            check_name("service", service, MAX_SERVICE_CHARS)
        except InvalidEvent as e:
            raise InvalidEvent("service", e.message) from e
    found = await read_incidents(ctx.redis, ctx.keys, state, since_ms, service, limit)
    return json_response({"incidents": found})
