"""Demo traffic: a synthetic producer with diurnal and weekday/weekend patterns, slow outliers,
a history backfill that passes minSamples at once, and a printer of flagged anomalies."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO, cast
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from pipeline.daytypes import WEEKEND_DAYS
from pipeline.events import TraceEvent, to_fields
from pipeline.keys import Keys
from pipeline.retry import sleep_or_stop
from pipeline.streams import StreamReply

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
XADD_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class Endpoint:
    service: str
    name: str
    typical_ms: float  # at the weekday afternoon peak


ENDPOINTS = (
    Endpoint("checkout", "POST /pay", 180.0),
    Endpoint("checkout", "GET /cart", 45.0),
    Endpoint("search", "GET /search", 90.0),
    Endpoint("auth", "POST /login", 35.0),
    Endpoint("catalog", "GET /products/{id}", 25.0),
)


def typical_ms(ep: Endpoint, local: datetime) -> float:
    """Busy afternoons are slower than nights; weekends are lighter than weekdays."""
    daylight = max(0.0, math.sin(math.pi * (local.hour - 6) / 16)) if 6 <= local.hour < 22 else 0.0
    load = 0.45 + 0.55 * daylight
    if local.weekday() in WEEKEND_DAYS:
        load *= 0.7
    return ep.typical_ms * load


class DemoTraffic:
    def __init__(
        self, redis: Redis, keys: Keys, zone: ZoneInfo, rate_per_s: float = 40.0,
        slow_fraction: float = 0.02, seed: int | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.zone = zone
        self.rate_per_s = rate_per_s
        self.slow_fraction = slow_fraction
        self.rng = random.Random(seed)

    def event(self, ep: Endpoint, start_ns: int, slow: bool = False) -> TraceEvent:
        local = datetime.fromtimestamp(start_ns / NS_PER_S, self.zone)
        duration = typical_ms(ep, local) * self.rng.lognormvariate(0.0, 0.2)
        if slow:
            duration *= self.rng.uniform(5.0, 12.0)
        trace_id = f"{self.rng.getrandbits(128):032x}"
        return TraceEvent(trace_id, ep.service, ep.name, start_ns, round(duration, 3), "demo")

    async def publish(self, events: list[TraceEvent]) -> None:
        for i in range(0, len(events), XADD_CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for event in events[i : i + XADD_CHUNK]:
                    pipe.xadd(self.keys.traces, to_fields(event))  # type: ignore[arg-type]
                await pipe.execute()

    async def backfill(self, days: int = 7, per_hour: int = 60, out: TextIO = sys.stdout) -> int:
        """`per_hour` normal samples per endpoint for every hour of the last `days` days."""
        now_ns = time.time_ns()
        total = days * 24 * len(ENDPOINTS) * per_hour
        print(f"demo: backfilling {days} days of history ({total} traces)...", file=out, flush=True)
        started = time.perf_counter()
        for hour_back in range(1, days * 24 + 1):
            hour_start = now_ns - hour_back * 3600 * NS_PER_S
            events = [
                self.event(ep, hour_start + self.rng.randrange(3600 * NS_PER_S))
                for ep in ENDPOINTS for _ in range(per_hour)
            ]
            await self.publish(events)
        print(f"demo: backfill published in {time.perf_counter() - started:.1f} s", file=out,
              flush=True)
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Live traffic at `rate_per_s`, `slow_fraction` of it far slower than usual."""
        tick_s = 0.25
        while not stop.is_set():
            n = max(1, round(self.rate_per_s * tick_s))
            now_ns = time.time_ns()
            events = [
                self.event(self.rng.choice(ENDPOINTS), now_ns - self.rng.randrange(NS_PER_S),
                           slow=self.rng.random() < self.slow_fraction)
                for _ in range(n)
            ]
            await self.publish(events)
            await sleep_or_stop(stop, tick_s)


async def print_anomalies(redis: Redis, keys: Keys, stop: asyncio.Event, out: TextIO) -> None:
    """Tail `<p>anomalies` and print each flagged trace with its reason."""
    last: str | bytes = "$"
    while not stop.is_set():
        reply = cast(StreamReply | None,
                     await redis.xread({keys.anomalies: last}, block=1000, count=100))
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                last = entry_id
                trace = fields.get(b"trace_id", b"").decode()[-16:]
                reason = fields.get(b"reason", b"").decode()
                print(f"ANOMALY trace=…{trace} {reason}", file=out, flush=True)
