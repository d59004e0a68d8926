"""Labelled synthetic traffic for the evaluation: a week of several endpoints with
hour-of-day and weekday/weekend seasonality, a nightly batch window where slowness is
normal, isolated outliers, sustained incidents (1.5x-3x, 10-90 min), a deploy step
change, a new endpoint and a holiday (a weekday that behaves like a weekend).

Everything is drawn from one `numpy.random.Generator(seed)`: the same seed gives the
same traces, durations and labels. Times are event times (trace start), unix ms.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np

MIN_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Trace kinds (labels). The first four are normal traffic, the rest should be flagged.
NORMAL, BATCH, HOLIDAY, NEW, OUTLIER, NEW_OUTLIER, INCIDENT, DEPLOY = range(8)
KIND_NAMES = ("normal", "batch window", "holiday", "new endpoint", "outlier",
              "new-endpoint outlier", "incident", "deploy step")
ANOMALOUS = (OUTLIER, NEW_OUTLIER, INCIDENT, DEPLOY)
# Traces of a deploy step count as anomalous for this long after it; then it is the new
# normal as far as per-trace verdicts go.
DEPLOY_LABEL_MS = 2 * HOUR_MS
OUTLIER_SHARE = 0.002
OUTLIER_FACTORS = (6.0, 15.0)


@dataclass(frozen=True, slots=True)
class Endpoint:
    service: str
    endpoint: str
    base_ms: float  # median latency at the daily mean
    sigma: float  # lognormal spread
    peak_per_min: float  # requests a minute at the busiest hour
    diurnal: float = 0.3  # latency swing over the day (+-)
    weekend_latency: float = 1.0  # weekends (and the holiday) are this much slower
    weekend_rate: float = 0.6
    batch_hours: tuple[int, int] | None = None  # [from, to) local hours, nightly
    batch_factor: float = 1.0
    new_from_day: int | None = None  # appears on this day index, 08:00


ENDPOINTS = (
    Endpoint("shop", "GET /products", 80, 0.25, 40, weekend_latency=1.6, weekend_rate=1.2),
    Endpoint("shop", "POST /checkout", 220, 0.3, 25),
    Endpoint("billing", "POST /invoice", 150, 0.25, 30, batch_hours=(1, 4), batch_factor=3.0),
    Endpoint("search", "GET /query", 60, 0.35, 35, diurnal=0.4),
    Endpoint("auth", "POST /login", 40, 0.2, 30),
    Endpoint("catalog", "GET /new", 120, 0.3, 2, new_from_day=5),
)
SMOKE_ENDPOINTS = ENDPOINTS[:3]


@dataclass(frozen=True, slots=True)
class Incident:
    """A labelled sustained slowdown (kind "incident") or a deploy step ("deploy")."""

    endpoint: int  # index into the scenario's endpoints
    start_ms: int
    end_ms: int
    factor: float
    kind: str = "incident"


@dataclass(slots=True)
class Scenario:
    seed: int
    zone: ZoneInfo
    days: list[dt.date]  # the calendar, in order (gaps allowed)
    scored_from_day: int  # earlier days only warm the baselines up
    holiday_day: int | None
    endpoints: tuple[Endpoint, ...]
    incidents: list[Incident] = field(default_factory=list)
    deploy: Incident | None = None
    hours: tuple[int, int] = (0, 24)  # the local hours of each day generated

    def day_start_ms(self, day: int) -> int:
        local = dt.datetime.combine(self.days[day], dt.time(0), tzinfo=self.zone)
        return int(local.timestamp() * 1000)

    @property
    def holiday(self) -> dt.date | None:
        return None if self.holiday_day is None else self.days[self.holiday_day]

    def scored_start_ms(self) -> int:
        return self.day_start_ms(self.scored_from_day)


def calendar(smoke: bool, today: dt.date) -> tuple[list[dt.date], int, int | None]:
    """(days, first scored day, holiday day). A full run is Friday to Thursday, two weeks
    ago: Friday and Saturday warm the weekday and weekend baselines up; Sunday to Thursday
    are scored, Tuesday being a holiday. The smoke run is Friday (warm-up) and Monday,
    06:00-22:00 each."""
    friday = today - dt.timedelta(days=(today.weekday() - 4) % 7 + 14)
    if smoke:
        return [friday, friday + dt.timedelta(days=3)], 1, None
    return [friday + dt.timedelta(days=i) for i in range(7)], 2, 4


def scenario(seed: int, zone: ZoneInfo, smoke: bool = False,
             today: dt.date | None = None) -> Scenario:
    days, scored, holiday = calendar(smoke, today or dt.date.today())
    endpoints = SMOKE_ENDPOINTS if smoke else ENDPOINTS
    sc = Scenario(seed, zone, days, scored, holiday, endpoints,
                  hours=(6, 22) if smoke else (0, 24))
    rng = np.random.default_rng(seed)
    count = 3 if smoke else 8
    factors = [2.0, 3.0, 1.5] if smoke else [1.5, 1.75, 2.0, 2.0, 2.5, 2.5, 3.0, 3.0]
    busy = [i for i, e in enumerate(endpoints) if e.new_from_day is None]
    for factor in factors[:count]:
        sc.incidents.append(_place(sc, rng, busy, factor))
    if not smoke:
        day = len(days) - 2
        start = sc.day_start_ms(day) + int(rng.integers(10, 16)) * HOUR_MS
        sc.deploy = Incident(3, start, start + DEPLOY_LABEL_MS, 1.6, "deploy")
    return sc


def _place(sc: Scenario, rng: np.random.Generator, busy: list[int], factor: float) -> Incident:
    """A 10-90 min incident on a scored day, starting 07:00-21:00, not overlapping
    another one on the same endpoint nor the holiday (kept clean to test false ones)."""
    scored_days = [d for d in range(sc.scored_from_day, len(sc.days)) if d != sc.holiday_day]
    while True:
        ep = busy[int(rng.integers(len(busy)))]
        day = scored_days[int(rng.integers(len(scored_days)))]
        latest = min(21, sc.hours[1] - 2)  # ends before the day's traffic does
        start = sc.day_start_ms(day) + int(rng.integers(7 * 60, latest * 60)) * MIN_MS
        end = start + int(rng.integers(10, 91)) * MIN_MS
        clash = any(i.endpoint == ep and i.start_ms < end + HOUR_MS and start < i.end_ms + HOUR_MS
                    for i in sc.incidents)
        if not clash:
            return Incident(ep, start, end, factor)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Traces starting in [start_ms, end_ms), sorted by start."""

    ids: np.ndarray  # int64, unique over the run
    endpoint: np.ndarray  # int16 index into the scenario's endpoints
    start_ms: np.ndarray  # int64 (unix ms; start_ns is this x 1e6 plus the id's low bits)
    duration_ms: np.ndarray  # float64
    kind: np.ndarray  # int8 label
    scored: bool


class Generator:
    """Draws the traces of consecutive chunks of a scenario's calendar."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = np.random.default_rng(sc.seed + 1_000_003)
        self.next_id = 1

    def chunks(self, chunk_ms: int) -> list[tuple[int, int, int]]:
        """(day, start, end) of every chunk of the calendar."""
        out = []
        first, last = self.sc.hours
        for day in range(len(self.sc.days)):
            start = self.sc.day_start_ms(day)
            out += [(day, t, t + chunk_ms)
                    for t in range(start + first * HOUR_MS, start + last * HOUR_MS, chunk_ms)]
        return out

    def chunk(self, day: int, start_ms: int, end_ms: int) -> Chunk:
        parts = [self._endpoint(i, e, day, start_ms, end_ms)
                 for i, e in enumerate(self.sc.endpoints)]
        ep = np.concatenate([p[0] for p in parts])
        start = np.concatenate([p[1] for p in parts])
        dur = np.concatenate([p[2] for p in parts])
        kind = np.concatenate([p[3] for p in parts])
        order = np.argsort(start, kind="stable")
        ids = np.arange(self.next_id, self.next_id + ep.size, dtype=np.int64)
        self.next_id += ep.size
        return Chunk(ids, ep[order], start[order], dur[order], kind[order],
                     day >= self.sc.scored_from_day)

    def _endpoint(self, i: int, e: Endpoint, day: int, start_ms: int, end_ms: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        sc, rng = self.sc, self.rng
        day_start = sc.day_start_ms(day)
        weekendish = sc.days[day].weekday() >= 5 or day == sc.holiday_day
        if e.new_from_day is not None and (day < e.new_from_day or
                                           start_ms < day_start + 8 * HOUR_MS and
                                           day == e.new_from_day):
            return _empty()
        hour = ((start_ms - day_start) / HOUR_MS) % 24
        rate = e.peak_per_min * _activity(hour) * (e.weekend_rate if weekendish else 1.0)
        n = int(rng.poisson(rate * (end_ms - start_ms) / MIN_MS))
        if n == 0:
            return _empty()
        start = np.sort(rng.integers(start_ms, end_ms, n))
        hours = ((start - day_start) / HOUR_MS) % 24
        level = e.base_ms * (1 + e.diurnal * np.sin(2 * math.pi * (hours - 9) / 24))
        kind = np.full(n, NORMAL, dtype=np.int8)
        if weekendish:
            level = level * e.weekend_latency
            if day == sc.holiday_day:
                kind[:] = HOLIDAY
        if e.new_from_day is not None:
            kind[:] = NEW
        if e.batch_hours is not None:
            in_batch = (hours >= e.batch_hours[0]) & (hours < e.batch_hours[1])
            level = np.where(in_batch, level * e.batch_factor, level)
            kind[in_batch] = BATCH
        for inc in [*sc.incidents, *([sc.deploy] if sc.deploy else [])]:
            if inc.endpoint != i:
                continue
            until = inc.end_ms if inc.kind == "incident" else end_ms + 1
            hit = (start >= inc.start_ms) & (start < until)
            level = np.where(hit, level * inc.factor, level)
            labelled = hit & (start < inc.end_ms)
            kind[labelled] = INCIDENT if inc.kind == "incident" else DEPLOY
        dur = level * rng.lognormal(0.0, e.sigma, n)
        outlier = rng.random(n) < OUTLIER_SHARE
        dur = np.where(outlier, dur * rng.uniform(*OUTLIER_FACTORS, n), dur)
        kind[outlier] = NEW_OUTLIER if e.new_from_day is not None else OUTLIER
        return np.full(n, i, dtype=np.int16), start.astype(np.int64), dur, kind


def _activity(hour: float) -> float:
    """Share of the peak rate at a local hour: quiet at 04:00, busiest mid-afternoon."""
    return 0.2 + 0.8 * (0.5 - 0.5 * math.cos(2 * math.pi * ((hour - 4) % 24) / 24))


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.empty(0, np.int16), np.empty(0, np.int64), np.empty(0, np.float64),
            np.empty(0, np.int8))
