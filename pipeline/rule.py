"""The anomaly rule and its explanation, as pure functions (no I/O).

anomaly iff count >= min_samples and duration > threshold, where
threshold = max(p95 * factor, p50 + k * MAD, floor_ms).

`floor_ms` (default 1 ms) is the one addition to the seed's rule: a bucket whose samples
are all zero (sub-millisecond spans reported as 0) would otherwise have threshold 0 and
flag every request that takes any time at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.buckets import BucketRef
from pipeline.settings import setting
from pipeline.stats import Baseline

Status = Literal["anomaly", "normal", "no_baseline", "insufficient_samples"]
Term = Literal["p95_factor", "p50_k_mad", "floor"]


# min_samples when unset; capped at window_size, since a bucket never holds more samples.
MIN_SAMPLES_DEFAULT = 50


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """`rule.*` (TLA_RULE_*), each declared once; `params()` resolves what is derived."""

    factor: float = setting(2.0, "p95 multiplier", above=0)
    k: float = setting(10.0, "MAD multiplier", min=0)
    min_samples: int | None = setting(
        None, "fewer samples in the bucket: never an anomaly", above=0,
        unset="derived: 50, or the window size if smaller")
    window_size: int = setting(
        1000, "rolling samples kept per bucket", above=0, max=100_000,
        why="a larger window makes every recompute slow")
    floor_ms: float = setting(1.0, "lowest threshold (keeps all-zero buckets quiet)", min=0)

    def params(self) -> RuleParams:
        min_samples = self.min_samples
        if min_samples is None:
            min_samples = min(MIN_SAMPLES_DEFAULT, self.window_size)
        return RuleParams(self.factor, self.k, min_samples, self.floor_ms, self.window_size)


@dataclass(frozen=True, slots=True)
class RuleParams:
    """The rule's resolved parameters (from `RuleSettings.params()`)."""

    factor: float
    k: float
    min_samples: int
    floor_ms: float
    window_size: int


@dataclass(frozen=True, slots=True)
class Threshold:
    value_ms: float
    term: Term
    p95_term_ms: float
    mad_term_ms: float


@dataclass(frozen=True, slots=True)
class Verdict:
    is_anomaly: bool
    status: Status
    duration_ms: float
    ref: BucketRef
    baseline: Baseline | None
    threshold: Threshold | None
    reason: str


def threshold_of(baseline: Baseline, params: RuleParams) -> Threshold:
    p95_term = baseline.p95 * params.factor
    mad_term = baseline.p50 + params.k * baseline.mad
    # Ties go to the seed's first term, so equal terms explain themselves the simple way.
    if params.floor_ms > max(p95_term, mad_term):
        return Threshold(params.floor_ms, "floor", p95_term, mad_term)
    if mad_term > p95_term:
        return Threshold(mad_term, "p50_k_mad", p95_term, mad_term)
    return Threshold(p95_term, "p95_factor", p95_term, mad_term)


def ms(value: float) -> str:
    """Milliseconds as a person reads them: 912 ms, 12.5 ms, 0.25 ms."""
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.3g} ms" if value < 10 else f"{value:.1f} ms".replace(".0 ms", " ms")


def where(ref: BucketRef, tz_name: str) -> str:
    return f"{ref.service} {ref.endpoint}, {ref.bucket.label(tz_name)}"


def explain_threshold(t: Threshold, b: Baseline, p: RuleParams) -> str:
    terms = f"max({p.factor:g} x p95 {ms(b.p95)}, p50 {ms(b.p50)} + {p.k:g} x MAD {ms(b.mad)})"
    if t.term == "floor":
        return f"threshold {ms(t.value_ms)} = floor (above {terms})"
    return f"threshold {ms(t.value_ms)} = {terms}"


def evaluate(
    duration_ms: float,
    ref: BucketRef,
    baseline: Baseline | None,
    params: RuleParams,
    tz_name: str,
) -> Verdict:
    """The verdict for one request, with every number behind it and a one-line reason."""
    place = where(ref, tz_name)
    if baseline is None or baseline.count == 0:
        reason = f"no baseline yet for {place}: not judged"
        return Verdict(False, "no_baseline", duration_ms, ref, None, None, reason)
    threshold = threshold_of(baseline, params)
    if baseline.count < params.min_samples:
        reason = (
            f"only {baseline.count} samples for {place} (minSamples {params.min_samples}): "
            "not judged yet"
        )
        return Verdict(False, "insufficient_samples", duration_ms, ref, baseline, threshold, reason)
    is_anomaly = duration_ms > threshold.value_ms
    op = ">" if is_anomaly else "<="
    reason = (
        f"{ms(duration_ms)} {op} {explain_threshold(threshold, baseline, params)} "
        f"for {place}, n={baseline.count}"
    )
    status: Status = "anomaly" if is_anomaly else "normal"
    return Verdict(is_anomaly, status, duration_ms, ref, baseline, threshold, reason)


def judged_threshold(baseline: Baseline | None, params: RuleParams) -> Threshold | None:
    """The threshold `evaluate` compares against, or None where it judges nothing (no
    baseline, too few samples): only durations above it need `evaluate` at all."""
    if baseline is None or baseline.count == 0 or baseline.count < params.min_samples:
        return None
    return threshold_of(baseline, params)
