"""`tempo-anomaly inspect`: streams, groups, lag, pending, dead letters and bucket counts."""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis

from pipeline.keys import Keys
from pipeline.streams import Entry

LATEST_DEAD = 5
SCAN_COUNT = 1000


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def stream_report(redis: Redis, stream: str) -> dict[str, Any]:
    if not await redis.exists(stream):
        return {"stream": stream, "exists": False, "length": 0, "groups": []}
    info = await redis.xinfo_stream(stream)
    groups = []
    for g in await redis.xinfo_groups(stream):
        consumers = await redis.xinfo_consumers(stream, g["name"])
        groups.append({
            "name": _text(g["name"]),
            "pending": g["pending"],
            "lag": g.get("lag"),
            "last_delivered_id": _text(g["last-delivered-id"]),
            "consumers": [
                {"name": _text(c["name"]), "pending": c["pending"], "idle_ms": c["idle"]}
                for c in consumers
            ],
        })
    first, last = info.get("first-entry"), info.get("last-entry")
    return {
        "stream": stream,
        "exists": True,
        "length": info["length"],
        "first_id": _text(first[0]) if first else None,
        "last_id": _text(last[0]) if last else None,
        "groups": groups,
    }


async def _count(redis: Redis, pattern: str) -> int:
    return sum([1 async for _ in redis.scan_iter(match=pattern, count=SCAN_COUNT)])


async def collect(redis: Redis, keys: Keys) -> dict[str, Any]:
    streams = [await stream_report(redis, s) for s in (keys.traces, keys.dirty, keys.anomalies)]
    dead = await stream_report(redis, keys.dead)
    latest = cast(list[Entry], await redis.xrevrange(keys.dead, count=LATEST_DEAD)
                  if dead["exists"] else [])
    dead["latest"] = [
        {"id": _text(i), "error": _text(f.get(b"error")), "origin_id": _text(f.get(b"origin_id"))}
        for i, f in latest
    ]
    return {
        "prefix": keys.prefix,
        "streams": streams,
        "dead_letters": dead,
        "buckets": await _count(redis, f"{keys.prefix}dur:*"),
        "baselines": await _count(redis, keys.base_pattern()),
    }


def render(report: dict[str, Any]) -> str:
    lines = [f"prefix {report['prefix']!r}: {report['buckets']} buckets with samples, "
             f"{report['baselines']} baselines"]
    for s in report["streams"]:
        if not s["exists"]:
            lines.append(f"{s['stream']}: (absent)")
            continue
        lines.append(f"{s['stream']}: length {s['length']}, first {s['first_id']}, "
                     f"last {s['last_id']}")
        for g in s["groups"]:
            lines.append(f"  group {g['name']}: pending {g['pending']}, lag {g['lag']}, "
                         f"last delivered {g['last_delivered_id']}")
            for c in g["consumers"]:
                lines.append(f"    consumer {c['name']}: pending {c['pending']}, "
                             f"idle {c['idle_ms'] / 1000:.1f} s")
    dead = report["dead_letters"]
    lines.append(f"{dead['stream']}: {dead['length']} dead letters")
    for d in dead["latest"]:
        lines.append(f"  {d['id']} (from {d['origin_id']}): {d['error']}")
    return "\n".join(lines)
