"""Push a scenario's traffic end to end through the product, in event-time order.

The stages are the product's own (services.runner builds them from Settings, as `run`
does), stepped by event time instead of the wall clock: for every chunk of traffic the
traces are XADDed to `<p>traces`; the ingest group consumes them (dedup, sample rings,
per-trace verdicts on `<p>anomalies`); recompute rewrites the chunk's buckets (a chunk is
2 minutes of event time: baselines as fresh as 30 s windows make them relative to the
traffic, give or take a chunk); the detect group aggregates and judges intervals as its
event-time watermark passes them (`<p>incidents`). Flagged trace ids and incident entries
are read back from the streams.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from redis.asyncio import Redis

from pipeline import streams
from pipeline.buckets import BucketRef, ZoneBuckets
from pipeline.keys import INGEST_GROUP
from pipeline.metrics import Metrics
from scripts.eval.traffic import MIN_MS, Generator, Scenario
from services import runner
from services.config import Settings, sections

CHUNK_MS = 2 * MIN_MS
XADD_BATCH = 2000


def product_env(sc: Scenario) -> dict[str, str]:
    """The full product's extra settings, where this build has them (TLA_RULE_FALLBACK,
    TLA_HOLIDAYS_EXTRA come with the thin-bucket and holiday work)."""
    env = {}
    if has_setting("rule", "fallback"):
        env["TLA_RULE_FALLBACK"] = "on"
    if has_setting("holidays", "extra") and sc.holiday is not None:
        env["TLA_HOLIDAYS_EXTRA"] = sc.holiday.isoformat()
    return env


def seed_env() -> dict[str, str]:
    """The seed's rule alone: fallback off where the setting exists."""
    return {"TLA_RULE_FALLBACK": "off"} if has_setting("rule", "fallback") else {}


def has_setting(section: str, name: str) -> bool:
    for sec, cls in sections():
        if sec == section:
            return name in {f.name for f in dataclasses.fields(cls)}
    return False


@dataclass(slots=True)
class RunResult:
    env: dict[str, str]
    flagged: set[int] = field(default_factory=set)  # trace ids flagged by the rule
    incidents: dict[str, dict[str, str]] = field(default_factory=dict)  # id → newest entry
    opened_at: dict[str, int] = field(default_factory=dict)  # id → event ms it opened at
    traces: int = 0
    seconds: float = 0.0


async def drive(redis: Redis, prefix: str, sc: Scenario, env: dict[str, str],
                labels: list[Any] | None = None) -> RunResult:
    """Run the scenario through a fresh deployment under `prefix`; `labels`, when given,
    receives every chunk (the generator's labels, for scoring)."""
    settings = Settings.load(env={"TLA_KEY_PREFIX": prefix, "TLA_TIMEZONE": str(sc.zone.key),
                                  "TLA_INCIDENTS_IDLE_FLUSH_S": "86400", **env})
    keys = settings.keys()
    metrics = Metrics()
    ingest = runner.make_ingestor(settings, redis, metrics, "eval-ingest")
    recompute = runner.make_recomputer(settings, redis, metrics, "eval-recompute")
    detect = runner.make_detector(settings, redis, metrics, "eval-detect")
    await streams.ensure_group(redis, keys.traces, INGEST_GROUP)
    await detect.start()
    buckets = ZoneBuckets(sc.zone)
    gen = Generator(sc)
    result = RunResult(env)
    after = "0-0"
    started = time.perf_counter()
    for day, start_ms, end_ms in gen.chunks(CHUNK_MS):
        chunk = gen.chunk(day, start_ms, end_ms)
        if labels is not None:
            labels.append(chunk)
        result.traces += int(chunk.ids.size)
        await _publish(redis, keys.traces, sc, chunk)
        await _drain_ingest(ingest)
        touched = {BucketRef(sc.endpoints[e].service, sc.endpoints[e].endpoint,
                             buckets(int(t) * 1_000_000)).id
                   for e, t in {(int(e), int(t) // 3_600_000 * 3_600_000)
                                for e, t in zip(chunk.endpoint, chunk.start_ms)}}
        await recompute.recompute(sorted(touched))
        ingest.baselines.forget()
        detect.baselines.forget()
        while await detect.poll(None):
            pass
        after = await _collect_flagged(redis, keys.anomalies, after, result.flagged)
        await streams.safe_trim(redis, keys.traces)
    # The end of the replay: judge every interval seen (the idle flush, made explicit).
    last = detect.max_event_ms + settings.incidents.interval_s * 1000
    await detect.judge_through(last - last % (settings.incidents.interval_s * 1000))
    await _collect_incidents(redis, keys.incidents, result)
    result.seconds = time.perf_counter() - started
    return result


async def _publish(redis: Redis, stream: str, sc: Scenario, chunk: Any) -> None:
    names = [(e.service, e.endpoint) for e in sc.endpoints]
    for lo in range(0, chunk.ids.size, XADD_BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(lo, min(lo + XADD_BATCH, chunk.ids.size)):
                service, endpoint = names[chunk.endpoint[i]]
                pipe.xadd(stream, {
                    "trace_id": f"{sc.seed:08x}{int(chunk.ids[i]):024x}",
                    "service": service, "endpoint": endpoint,
                    "start_ns": str(int(chunk.start_ms[i]) * 1_000_000),
                    "duration_ms": f"{float(chunk.duration_ms[i]):.3f}",
                })
            await pipe.execute()


async def _drain_ingest(ingest: Any) -> None:
    while entries := await streams.read_new(
        ingest.redis, ingest.keys.traces, INGEST_GROUP, ingest.consumer,
        ingest.settings.batch_size, None,
    ):
        await ingest.handle(entries)


async def _collect_flagged(redis: Redis, stream: str, after: str, into: set[int]) -> str:
    while True:
        page: Any = await redis.xrange(stream, min=f"({after}", count=5000)
        if not page:
            return after
        for entry_id, fields in page:
            into.add(int(fields[b"trace_id"][8:], 16))
            after = entry_id.decode()


async def _collect_incidents(redis: Redis, stream: str, result: RunResult) -> None:
    entries: Any = await redis.xrange(stream)
    for _id, raw in entries:
        entry = {k.decode(): v.decode() for k, v in raw.items()}
        result.incidents[entry["id"]] = entry
        if entry["state"] == "open":
            result.opened_at[entry["id"]] = int(entry["updated_ms"])


def flagged_mask(ids: np.ndarray, flagged: set[int]) -> np.ndarray:
    return np.fromiter((int(i) in flagged for i in ids), dtype=bool, count=ids.size)
