"""`GET /v1/incidents`: the incidents the detect stage keeps (pipeline/incidents), read
from their hashes and indexes, as JSON (OpenAPI `Incident`), newest first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypedDict, cast

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.buckets import MAX_SERVICE_CHARS
from pipeline.errors import InvalidEvent, StoreUnavailable
from pipeline.events import check_name
from pipeline.keys import Keys
from services.http import json_response

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
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
    incident is listed when it was open at some time since then), newest start first."""
    try:
        ids = cast(list[bytes], await redis.zrange(keys.incidents_open, 0, -1))
        if state == "all":
            ids += cast(list[bytes],
                        await redis.zrangebyscore(keys.incidents_closed, since_ms, "+inf"))
        async with redis.pipeline(transaction=False) as pipe:
            for incident_id in ids:
                pipe.hgetall(keys.incident(incident_id.decode()))
            found = await pipe.execute()
    except (RedisError, OSError) as e:
        raise StoreUnavailable(f"incident store unavailable: {e.__class__.__name__}") from e
    out = [incident_json(raw) for raw in found if raw]
    if service is not None:
        out = [i for i in out if i["service"] == service]
    out.sort(key=lambda i: (i["startedMs"], i["id"]), reverse=True)
    return out[:limit]


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not (text.isdecimal() and len(text) <= 19 and low <= int(text) <= high):
        raise InvalidEvent(name, f"must be an integer {low}-{high}, got {text[:30]!r}")
    return int(text)


async def list_incidents(ctx: IncidentsContext, request: web.BaseRequest) -> web.Response:
    q = request.query
    state = q.get("state", "all")
    if state not in STATES:
        raise InvalidEvent("state", f"must be 'open' or 'all', got {state[:30]!r}")
    since_ms = _int_param(q, "since", 0, 0, 2**63 - 1)
    limit = _int_param(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    service = q.get("service")
    if service is not None:
        try:
            check_name("service", service, MAX_SERVICE_CHARS)
        except InvalidEvent as e:
            raise InvalidEvent("service", e.message) from e
    found = await read_incidents(ctx.redis, ctx.keys, state, since_ms, service, limit)
    return json_response({"incidents": found})
