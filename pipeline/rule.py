"""The anomaly rule and its explanation, as pure functions (no I/O).

anomaly iff count >= min_samples and duration > threshold, where
threshold = max(p95 * factor, p50 + k * MAD, floor_ms).

`floor_ms` (default 1 ms) is the one addition to the seed's rule: a bucket whose samples
are all zero (sub-millisecond spans reported as 0) would otherwise have threshold 0 and
flag every request that takes any time at all.

Thin buckets (fewer than min_samples) are judged on a `Fallback` baseline when
`fallback` is on (pipeline/fallback.py chooses it); the verdict then names the level it
used and says so in its reason. With `fallback` off, the seed's verdicts exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.buckets import BucketRef
from pipeline.settings import setting
from pipeline.stats import Baseline

Status = Literal["anomaly", "normal", "no_baseline", "insufficient_samples"]
Term = Literal["p95_factor", "p50_k_mad", "floor"]
# Which baseline judged: the bucket's own, then the fallback levels in the order tried.
Level = Literal["bucket", "neighbour_hour", "other_day_type", "endpoint"]
LEVELS: tuple[Level, ...] = ("bucket", "neighbour_hour", "other_day_type", "endpoint")


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
    fallback: bool = setting(
        True, "`on`: a bucket with fewer than minSamples is judged on the neighbouring hours "
        "of its day type, then the same hour of the other day type, then the endpoint's "
        "all-hours baseline, the first with minSamples; `off`: never judged (the seed's rule)")

    def params(self) -> RuleParams:
        min_samples = self.min_samples
        if min_samples is None:
            min_samples = min(MIN_SAMPLES_DEFAULT, self.window_size)
        return RuleParams(self.factor, self.k, min_samples, self.floor_ms, self.window_size,
                          self.fallback)


@dataclass(frozen=True, slots=True)
class RuleParams:
    """The rule's resolved parameters (from `RuleSettings.params()`)."""

    factor: float
    k: float
    min_samples: int
    floor_ms: float
    window_size: int
    fallback: bool = True


@dataclass(frozen=True, slots=True)
class Threshold:
    value_ms: float
    term: Term
    p95_term_ms: float
    mad_term_ms: float


@dataclass(frozen=True, slots=True)
class Fallback:
    """The baseline a thin bucket is judged on instead of its own (pipeline/fallback.py)."""

    level: Level
    source: str  # the id of the baseline used: a bucket id, or `{svc|ep}:all`
    what: str  # how the reason names it, e.g. "the neighbouring hour 13:00 weekday"
    baseline: Baseline


@dataclass(frozen=True, slots=True)
class Verdict:
    is_anomaly: bool
    status: Status
    duration_ms: float
    ref: BucketRef
    baseline: Baseline | None  # the baseline that judged: the fallback's when one did
    threshold: Threshold | None
    reason: str
    fallback: Fallback | None = None

    @property
    def level(self) -> Level:
        return "bucket" if self.fallback is None else self.fallback.level


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


def explanation(t: Threshold, ref: BucketRef, tz_name: str, p: RuleParams,
                baseline: Baseline | None, fallback: Fallback | None = None) -> str:
    """A judged verdict's reason after the duration and the comparison: the threshold, the
    bucket, and which baseline judged (with a fallback, why it was used)."""
    if fallback is None:
        assert baseline is not None
        return f"{explain_threshold(t, baseline, p)} for {where(ref, tz_name)}, n={baseline.count}"
    used, own = fallback.baseline, baseline.count if baseline is not None else 0
    return (f"{explain_threshold(t, used, p)} for {where(ref, tz_name)}, judged on "
            f"{fallback.what}, n={used.count} (this bucket has {own} samples, fewer than "
            f"minSamples {p.min_samples})")


def evaluate(
    duration_ms: float,
    ref: BucketRef,
    baseline: Baseline | None,
    params: RuleParams,
    tz_name: str,
    fallback: Fallback | None = None,
) -> Verdict:
    """The verdict for one request, with every number behind it and a one-line reason.

    `baseline` is the bucket's own; `fallback` (for a thin bucket only) the one that
    judges instead."""
    if fallback is not None and (not params.fallback or not needs_fallback(baseline, params)):
        fallback = None  # fallback off, or the bucket has min_samples: its own judges
    if fallback is not None:
        return _judge(duration_ms, ref, baseline, params, tz_name, fallback)
    place = where(ref, tz_name)
    tried = "; no fallback level has minSamples either" if params.fallback else ""
    if baseline is None or baseline.count == 0:
        reason = f"no baseline yet for {place}: not judged{tried}"
        return Verdict(False, "no_baseline", duration_ms, ref, None, None, reason)
    if baseline.count < params.min_samples:
        reason = (
            f"only {baseline.count} samples for {place} (minSamples {params.min_samples}): "
            f"not judged yet{tried}"
        )
        return Verdict(False, "insufficient_samples", duration_ms, ref, baseline,
                       threshold_of(baseline, params), reason)
    return _judge(duration_ms, ref, baseline, params, tz_name, None)


def _judge(duration_ms: float, ref: BucketRef, baseline: Baseline | None, params: RuleParams,
           tz_name: str, fallback: Fallback | None) -> Verdict:
    """A verdict on a baseline with min_samples: the bucket's own, or the fallback's."""
    used = fallback.baseline if fallback is not None else baseline
    assert used is not None
    threshold = threshold_of(used, params)
    is_anomaly = duration_ms > threshold.value_ms
    op = ">" if is_anomaly else "<="
    reason = (f"{ms(duration_ms)} {op} "
              f"{explanation(threshold, ref, tz_name, params, baseline, fallback)}")
    status: Status = "anomaly" if is_anomaly else "normal"
    return Verdict(is_anomaly, status, duration_ms, ref, used, threshold, reason, fallback)


def needs_fallback(baseline: Baseline | None, params: RuleParams) -> bool:
    """True when the bucket's own baseline cannot judge (none, or fewer than min_samples)."""
    return baseline is None or baseline.count == 0 or baseline.count < params.min_samples


def judged_threshold(baseline: Baseline | None, params: RuleParams,
                     fallback: Fallback | None = None) -> Threshold | None:
    """The threshold `evaluate` compares against, or None where it judges nothing (no
    baseline, too few samples, no fallback): only durations above it need `evaluate`."""
    if not needs_fallback(baseline, params):
        assert baseline is not None
        return threshold_of(baseline, params)
    if fallback is None or not params.fallback:
        return None
    return threshold_of(fallback.baseline, params)
