"""Statistics and the rule: pure functions, edge cases defined."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.buckets import BucketRef, TimeBucket
from pipeline.rule import RuleSettings, evaluate, judged_threshold, ms, threshold_of
from pipeline.stats import Baseline, compute_baseline

REF = BucketRef("checkout", "POST /pay", TimeBucket(14, "weekday"))
TZ = "Asia/Taipei"
P = RuleSettings().params()


def test_percentiles_and_mad() -> None:
    samples = np.arange(1, 101, dtype=np.float64)  # 1..100 ms
    b = compute_baseline(samples, now_ms=7)
    assert b.p50 == pytest.approx(50.5)
    assert b.p95 == pytest.approx(95.05)
    assert b.mad == pytest.approx(25.0)  # median of |x - 50.5| over 1..100
    assert (b.count, b.updated_ms) == (100, 7)


def test_empty_sample_gives_zero_count() -> None:
    assert compute_baseline(np.empty(0), 1).count == 0


def test_hash_round_trip_and_partial_hash() -> None:
    b = Baseline(120.0, 300.5, 15.25, 1000, 1764396000000)
    raw = {k.encode(): v.encode() for k, v in b.to_hash().items()}
    assert Baseline.from_hash(raw) == b
    assert Baseline.from_hash({b"p50": b"1"}) is None
    assert Baseline.from_hash({}) is None


def test_the_seed_example_reads_as_promised() -> None:
    v = evaluate(912, REF, Baseline(120, 300, 15, 1000, 0), P, TZ)
    assert v.is_anomaly and v.status == "anomaly"
    assert v.threshold is not None and v.threshold.value_ms == 600 and v.threshold.term == "p95_factor"
    assert v.reason == (
        "912 ms > threshold 600 ms = max(2 x p95 300 ms, p50 120 ms + 10 x MAD 15 ms) "
        "for checkout POST /pay, 14:00 weekday Asia/Taipei, n=1000"
    )


def test_mad_term_can_win() -> None:
    t = threshold_of(Baseline(100, 150, 40, 500, 0), P)
    assert (t.value_ms, t.term) == (500, "p50_k_mad")


def test_equal_to_threshold_is_normal() -> None:
    v = evaluate(600, REF, Baseline(120, 300, 15, 1000, 0), P, TZ)
    assert not v.is_anomaly and v.status == "normal" and "600 ms <= threshold" in v.reason


def test_no_baseline() -> None:
    v = evaluate(912, REF, None, P, TZ)
    assert (v.is_anomaly, v.status, v.threshold) == (False, "no_baseline", None)
    assert "no baseline yet" in v.reason


def test_too_few_samples_is_never_an_anomaly() -> None:
    v = evaluate(10_000, REF, Baseline(120, 300, 15, 49, 0), P, TZ)
    assert (v.is_anomaly, v.status) == (False, "insufficient_samples")
    assert "only 49 samples" in v.reason and "minSamples 50" in v.reason
    assert evaluate(10_000, REF, Baseline(120, 300, 15, 50, 0), P, TZ).is_anomaly


def test_all_zero_durations_fall_back_to_the_floor() -> None:
    zeros = compute_baseline(np.zeros(200), 0)
    assert (zeros.p50, zeros.p95, zeros.mad) == (0, 0, 0)
    assert not evaluate(0.0, REF, zeros, P, TZ).is_anomaly
    assert not evaluate(0.9, REF, zeros, P, TZ).is_anomaly
    v = evaluate(5.0, REF, zeros, P, TZ)
    assert v.is_anomaly and v.threshold is not None and v.threshold.term == "floor"
    assert "= floor" in v.reason


def test_constant_durations_use_the_factor() -> None:
    flat = compute_baseline(np.full(100, 80.0), 0)
    assert flat.mad == 0
    assert not evaluate(160, REF, flat, P, TZ).is_anomaly
    assert evaluate(160.5, REF, flat, P, TZ).is_anomaly


def test_huge_values_stay_finite_and_readable() -> None:
    b = compute_baseline(np.array([1e8] * 60), 0)
    v = evaluate(6.048e8, REF, b, P, TZ)
    assert v.is_anomaly and "604800000 ms" in v.reason


def test_params_change_the_verdict() -> None:
    b = Baseline(100, 200, 10, 100, 0)
    assert evaluate(300, REF, b, RuleSettings(factor=1.2, k=1).params(), TZ).is_anomaly
    assert not evaluate(300, REF, b, RuleSettings(factor=2.0, k=10).params(), TZ).is_anomaly


@pytest.mark.parametrize(("value", "text"), [(912.4, "912 ms"), (12.5, "12.5 ms"), (12.0, "12 ms"),
                                             (0.25, "0.25 ms"), (0.0, "0 ms")])
def test_ms_formatting(value: float, text: str) -> None:
    assert ms(value) == text


@given(
    st.floats(0, 1e6, allow_nan=False),
    st.none() | st.builds(Baseline, st.floats(0, 1e4), st.floats(0, 1e4), st.floats(0, 1e3),
                          st.integers(0, 2000), st.just(0)),
    st.integers(0, 100),
)
def test_judged_threshold_says_exactly_when_evaluate_flags(
    duration_ms: float, baseline: Baseline | None, min_samples: int
) -> None:
    params = RuleSettings(min_samples=min_samples).params()
    t = judged_threshold(baseline, params)
    flagged = t is not None and duration_ms > t.value_ms
    assert flagged == evaluate(duration_ms, REF, baseline, params, TZ).is_anomaly
