"""Incident detection as pure functions: an event-time interval judged against its hour's
baseline, and each endpoint's state machine (normal → suspect → open → closed).

An interval (one minute of trace start times by default) is degraded when it holds at
least `min_requests` requests, a binomial test says its share above the baseline's p95
is significantly more than the 5 % a normal interval has (p < `alpha`), and that share is
at least `min_share` (the effect size: with thousands of requests a tiny shift is
"significant" and still nothing to page on). `open_after` consecutive degraded intervals
open an incident that starts where the first of them started; it closes once `quiet_ms`
of event time passed without a degraded interval, and ends where the last one ended.

Baselines keep learning while an endpoint is slow (the sample rings take every trace),
so from the first degraded interval on, each hour's baseline is pinned: the incident is
judged against what the endpoint looked like before it degraded, not against itself. A
shift that lasts longer than `pin_max_ms` (a deploy that made the endpoint slower for
good) becomes the new normal: from then on the learned baseline judges, and once it has
caught up the incident closes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from pipeline.rule import ms

# A normal interval has 5 % of its requests above the p95 of its bucket, by definition.
EXPECTED_SHARE = 0.05
# An open incident emits an `update` entry every this many degraded intervals.
UPDATE_EVERY = 5

Status = Literal["degraded", "normal", "thin", "no_baseline"]
Phase = Literal["normal", "suspect", "open"]
ChangeKind = Literal["open", "update", "closed"]


@dataclass(frozen=True, slots=True)
class Params:
    interval_ms: int
    min_requests: int
    alpha: float
    min_share: float
    open_after: int
    quiet_ms: int
    min_samples: int  # the rule's minSamples: a thinner baseline judges nothing
    pin_max_ms: int = 86_400_000


@dataclass(frozen=True, slots=True)
class Reference:
    """The baseline an interval is judged against (its hour's, as it was)."""

    p50: float
    p95: float
    count: int


@dataclass(frozen=True, slots=True)
class Interval:
    """What one endpoint's requests in one interval looked like against `ref`."""

    start_ms: int
    end_ms: int
    requests: int
    above: int  # requests above ref.p95
    median_ms: float
    bucket: str  # the bucket id of the interval's hour
    ref: Reference | None


def measure(durations_ms: np.ndarray, start_ms: int, interval_ms: int, bucket: str,
            ref: Reference | None) -> Interval:
    n = int(durations_ms.size)
    median = float(np.median(durations_ms)) if n else 0.0
    above = int(np.count_nonzero(durations_ms > ref.p95)) if ref is not None and n else 0
    return Interval(start_ms, start_ms + interval_ms, n, above, median, bucket, ref)


def rejudged(iv: Interval, durations_ms: np.ndarray, ref: Reference) -> Interval:
    """The same interval counted against another reference (a pinned one)."""
    return replace(iv, ref=ref, above=int(np.count_nonzero(durations_ms > ref.p95)))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact in log space.

    Only the upper tail matters (more slow requests than expected); at or below the mean
    the answer is >= about one half and reported as 1.0.
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if k <= n * p:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                        + i * log_p + (n - i) * log_q)
        total += term
        if term < total * 1e-12:  # terms only shrink past the mean
            break
    return min(1.0, total)


def judge(iv: Interval, p: Params) -> tuple[Status, float]:
    """The interval's status and the binomial test's p-value."""
    ref = iv.ref
    if ref is None or ref.count < p.min_samples:
        return "no_baseline", 1.0
    if iv.requests < p.min_requests:
        return "thin", 1.0
    p_value = binomial_tail(iv.above, iv.requests, EXPECTED_SHARE)
    degraded = p_value < p.alpha and iv.above >= p.min_share * iv.requests
    return ("degraded" if degraded else "normal"), p_value


@dataclass(slots=True)
class EndpointState:
    """One endpoint's detector state, stored between intervals (a Redis hash)."""

    phase: Phase = "normal"
    last_end_ms: int = 0  # end of the last judged interval
    streak: int = 0  # consecutive degraded intervals
    streak_start_ms: int = 0
    last_bad_end_ms: int = 0
    started_ms: int = 0  # the open incident's start
    requests: int = 0  # totals since the streak started
    above: int = 0
    degraded: int = 0
    median_ms: float = 0.0  # the latest degraded interval's numbers
    p50: float = 0.0
    p95: float = 0.0
    pins: dict[str, Reference] = field(default_factory=dict)

    def to_hash(self) -> dict[str, str]:
        out = {k: str(getattr(self, k)) for k in _INT_FIELDS + _FLOAT_FIELDS}
        out["phase"] = self.phase
        out["pins"] = json.dumps({b: [r.p50, r.p95, r.count] for b, r in self.pins.items()})
        return out

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> EndpointState:
        if not raw:
            return cls()
        s = cls()
        for k in _INT_FIELDS:
            setattr(s, k, int(raw.get(k.encode(), b"0")))
        for k in _FLOAT_FIELDS:
            setattr(s, k, float(raw.get(k.encode(), b"0")))
        phase = raw.get(b"phase", b"normal").decode()
        s.phase = phase if phase in ("suspect", "open") else "normal"  # type: ignore[assignment]
        pins = json.loads(raw.get(b"pins", b"{}"))
        s.pins = {b: Reference(float(v[0]), float(v[1]), int(v[2])) for b, v in pins.items()}
        return s


_INT_FIELDS = ("last_end_ms", "streak", "streak_start_ms", "last_bad_end_ms", "started_ms",
               "requests", "above", "degraded")
_FLOAT_FIELDS = ("median_ms", "p50", "p95")


@dataclass(frozen=True, slots=True)
class Change:
    """An incident opened, still open (update) or closed: what the stream records."""

    kind: ChangeKind
    started_ms: int
    ended_ms: int | None  # set when closed
    updated_ms: int  # event time the numbers reach up to
    requests: int
    above: int
    degraded: int
    median_ms: float
    p50: float
    p95: float

    @property
    def share(self) -> float:
        return self.above / self.requests if self.requests else 0.0


def reference_for(s: EndpointState, iv: Interval, p: Params) -> Reference | None:
    """A suspect or open endpoint is judged against its pinned baseline of that hour,
    for at most `pin_max_ms` since the shift began."""
    if s.phase != "normal" and iv.bucket in s.pins and _pinning(s, iv, p):
        return s.pins[iv.bucket]
    return iv.ref


def _pinning(s: EndpointState, iv: Interval, p: Params) -> bool:
    return iv.start_ms - s.streak_start_ms < p.pin_max_ms


def step(s: EndpointState, iv: Interval, status: Status, p: Params) -> list[Change]:
    """Advance `s` (in place) by one judged interval, `iv` counted against
    `reference_for(s, iv)`; intervals of one endpoint come in event-time order."""
    changes = expire(s, iv.start_ms, p)
    if status == "degraded":
        changes += _degraded(s, iv, p)
    elif s.phase == "suspect":
        _reset(s)  # the streak is broken
    elif s.phase == "open" and iv.requests:
        s.requests += iv.requests
        s.above += iv.above
    s.last_end_ms = max(s.last_end_ms, iv.end_ms)
    return changes


def _degraded(s: EndpointState, iv: Interval, p: Params) -> list[Change]:
    if s.phase == "normal":
        s.phase, s.streak, s.streak_start_ms = "suspect", 0, iv.start_ms
        s.requests = s.above = s.degraded = 0
    if iv.ref is not None and iv.bucket not in s.pins and _pinning(s, iv, p):
        s.pins[iv.bucket] = iv.ref
    s.streak += 1
    s.degraded += 1
    s.requests += iv.requests
    s.above += iv.above
    s.last_bad_end_ms = iv.end_ms
    s.median_ms = iv.median_ms
    if iv.ref is not None:
        s.p50, s.p95 = iv.ref.p50, iv.ref.p95
    if s.phase == "suspect" and s.streak >= p.open_after:
        s.phase, s.started_ms = "open", s.streak_start_ms
        return [_change(s, "open", None)]
    if s.phase == "open" and s.degraded % UPDATE_EVERY == 0:
        return [_change(s, "update", None)]
    return []


def expire(s: EndpointState, watermark_ms: int, p: Params) -> list[Change]:
    """Everything before `watermark_ms` is judged: close a quiet incident, forget a
    streak whose next interval never came degraded."""
    if s.phase == "open" and watermark_ms - s.last_bad_end_ms >= p.quiet_ms:
        closed = _change(s, "closed", s.last_bad_end_ms)
        _reset(s)
        return [closed]
    if s.phase == "suspect" and watermark_ms >= s.last_bad_end_ms + p.interval_ms:
        _reset(s)
    return []


def _reset(s: EndpointState) -> None:
    last_end = s.last_end_ms
    for f in (*_INT_FIELDS, *_FLOAT_FIELDS):
        setattr(s, f, type(getattr(s, f))(0))
    s.phase, s.pins, s.last_end_ms = "normal", {}, last_end


def _change(s: EndpointState, kind: ChangeKind, ended_ms: int | None) -> Change:
    return Change(kind, s.started_ms, ended_ms, s.last_bad_end_ms, s.requests, s.above,
                  s.degraded, s.median_ms, s.p50, s.p95)


def explain(service: str, endpoint: str, c: Change, zone: ZoneInfo) -> str:
    """One line a person reads: what, since when, and the numbers."""
    numbers = (
        f"{round(c.share * 100)} % of {c.requests} requests above p95 {ms(c.p95)} "
        f"(expected 5 %), median {ms(c.median_ms)} vs p50 {ms(c.p50)}"
    )
    since = _local(c.started_ms, zone)
    if c.ended_ms is None:
        return f"{service} {endpoint} degraded since {since} {zone.key}: {numbers}"
    minutes = round((c.ended_ms - c.started_ms) / 60_000)
    until = _local(c.ended_ms, zone)[-5:]
    return (f"{service} {endpoint} was degraded {since}-{until} {zone.key} ({minutes} min): "
            f"{numbers}")


def _local(unix_ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, tz=zone).strftime("%Y-%m-%d %H:%M")
