"""The incident detector as pure functions: the binomial test, one interval's judgement,
and the state machine (open after N degraded intervals, pinned baselines, quiet close)."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pipeline.incidents.detect import (
    EndpointState,
    Interval,
    Params,
    Reference,
    binomial_tail,
    explain,
    expire,
    judge,
    measure,
    reference_for,
    rejudged,
    step,
)
from pipeline.incidents.settings import IncidentSettings

MIN = 60_000
T0 = 1_764_396_000_000  # 2025-11-29 06:00 UTC, 14:00 Asia/Taipei
P = IncidentSettings().params(min_samples=50)
REF = Reference(p50=100.0, p95=200.0, count=1000)
BUCKET = "{checkout|POST /pay}:14:weekday"


def interval(minute: int, n: int = 100, slow: int = 5, ref: Reference | None = REF,
             bucket: str = BUCKET) -> tuple[Interval, np.ndarray]:
    """`n` requests, `slow` of them above the p95 (300 ms), the rest at 100 ms."""
    durations = np.array([300.0] * slow + [100.0] * (n - slow))
    return measure(durations, T0 + minute * MIN, MIN, bucket, ref), durations


def run(state: EndpointState, minute: int, **kw: object) -> list:
    iv, durations = interval(minute, **kw)  # type: ignore[arg-type]
    ref = reference_for(state, iv, P)
    if ref is not None and ref is not iv.ref:
        iv = rejudged(iv, durations, ref)
    status, _ = judge(iv, P)
    return step(state, iv, status, P)


def test_binomial_tail_matches_the_exact_sum() -> None:
    def exact(k: int, n: int, p: float) -> float:
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))

    for k, n in ((6, 20), (12, 60), (30, 100), (61, 340)):
        assert binomial_tail(k, n, 0.05) == pytest.approx(exact(k, n, 0.05), rel=1e-9)
    assert binomial_tail(0, 10, 0.05) == 1.0
    assert binomial_tail(11, 10, 0.05) == 0.0
    assert binomial_tail(2, 100, 0.05) == 1.0  # at or below the mean: not in the upper tail


def test_one_slow_request_of_three_is_not_judged() -> None:
    iv, _ = interval(0, n=3, slow=1)
    assert judge(iv, P)[0] == "thin"


def test_a_normal_share_is_normal_and_a_large_share_is_degraded() -> None:
    assert judge(interval(0, n=100, slow=6)[0], P)[0] == "normal"
    status, p_value = judge(interval(0, n=100, slow=40)[0], P)
    assert status == "degraded" and p_value < 1e-10


def test_significant_but_tiny_shift_is_not_degraded() -> None:
    # 10 % above p95 of 10,000 requests is "significant", but below the effect size.
    iv, _ = interval(0, n=10_000, slow=1_000)
    status, p_value = judge(iv, P)
    assert p_value < P.alpha and status == "normal"


def test_no_baseline_or_a_thin_one_judges_nothing() -> None:
    assert judge(interval(0, slow=90, ref=None)[0], P)[0] == "no_baseline"
    thin = Reference(100.0, 200.0, count=10)
    assert judge(interval(0, slow=90, ref=thin)[0], P)[0] == "no_baseline"


def test_opens_after_consecutive_degraded_intervals_at_the_first_ones_start() -> None:
    s = EndpointState()
    assert run(s, 0, slow=40) == [] and s.phase == "suspect"
    assert run(s, 1, slow=40) == []
    (opened,) = run(s, 2, slow=40)
    assert opened.kind == "open" and opened.started_ms == T0 and opened.ended_ms is None
    assert (opened.requests, opened.above, opened.degraded) == (300, 120, 3)
    assert s.phase == "open"


def test_a_broken_streak_opens_nothing() -> None:
    s = EndpointState()
    run(s, 0, slow=40)
    run(s, 1, slow=40)
    run(s, 2, slow=5)  # normal
    assert s.phase == "normal" and s.pins == {}
    run(s, 3, slow=40)
    run(s, 4, slow=40)
    assert s.phase == "suspect"
    run(s, 6, slow=40)  # minute 5 had no degraded interval: a new streak
    assert s.phase == "suspect" and s.streak == 1


def test_pinned_baseline_outlives_a_baseline_that_learned_the_incident() -> None:
    s = EndpointState()
    for minute in range(3):
        run(s, minute, slow=40)
    learned = Reference(p50=250.0, p95=400.0, count=1000)  # the ring took the slow requests
    run(s, 3, slow=40, ref=learned)  # judged against the pin: still degraded
    assert s.degraded == 4 and s.pins[BUCKET] == REF
    # A new hour's bucket is pinned at its first interval.
    other = "{checkout|POST /pay}:15:weekday"
    run(s, 4, slow=40, bucket=other)
    assert set(s.pins) == {BUCKET, other}


def test_closes_after_the_quiet_period_ending_at_the_last_degraded_interval() -> None:
    s = EndpointState()
    for minute in range(10):
        run(s, minute, slow=60)
    quiet_min = P.quiet_ms // MIN
    for minute in range(10, 10 + quiet_min - 1):
        assert run(s, minute, slow=2) == []
    (closed,) = run(s, 10 + quiet_min, slow=2)
    assert closed.kind == "closed"
    assert (closed.started_ms, closed.ended_ms) == (T0, T0 + 10 * MIN)
    assert s.phase == "normal" and s.pins == {}


def test_updates_while_open_and_quiet_close_by_watermark_alone() -> None:
    s = EndpointState()
    kinds = [c.kind for m in range(10) for c in run(s, m, slow=60)]
    assert kinds == ["open", "update", "update"]  # at 3, then every 5 degraded intervals
    assert expire(s, T0 + 10 * MIN + P.quiet_ms - 1, P) == []
    (closed,) = expire(s, T0 + 10 * MIN + P.quiet_ms, P)
    assert closed.ended_ms == T0 + 10 * MIN


def test_state_survives_its_hash() -> None:
    s = EndpointState()
    for minute in range(4):
        run(s, minute, slow=40)
    raw = {k.encode(): v.encode() for k, v in s.to_hash().items()}
    assert EndpointState.from_hash(raw) == s
    assert EndpointState.from_hash({}) == EndpointState()


def test_the_reason_reads_like_a_sentence() -> None:
    s = EndpointState()
    changes = [c for m in range(3) for c in run(s, m, n=340, slow=207)]
    zone = ZoneInfo("Asia/Taipei")
    assert explain("checkout", "POST /pay", changes[0], zone) == (
        "checkout POST /pay degraded since 2025-11-29 14:00 Asia/Taipei: 61 % of 1020 "
        "requests above p95 200 ms (expected 5 %), median 300 ms vs p50 100 ms")
    (closed,) = expire(s, T0 + 3 * MIN + P.quiet_ms, P)
    assert explain("checkout", "POST /pay", closed, zone).startswith(
        "checkout POST /pay was degraded 2025-11-29 14:00-14:03 Asia/Taipei (3 min): 61 %")


def test_a_shift_longer_than_the_pin_becomes_the_new_normal() -> None:
    s = EndpointState()
    pin_min = P.pin_max_ms // MIN
    learned = Reference(p50=300.0, p95=400.0, count=1000)  # the ring learned the new level
    for minute in range(pin_min):
        run(s, minute, slow=60, ref=REF if minute < 3 else learned)
    assert s.phase == "open" and s.degraded == pin_min
    quiet_min = P.quiet_ms // MIN
    closed = [c for m in range(pin_min, pin_min + quiet_min + 1)
              for c in run(s, m, slow=60, ref=learned)]
    assert [c.kind for c in closed] == ["closed"]
    assert closed[0].ended_ms == T0 + pin_min * MIN
