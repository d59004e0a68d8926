"""JSON shapes of verdicts and baselines (camelCase, the seed's API contract), shared by API and CLI."""

from __future__ import annotations

import time
from typing import Any

from pipeline.buckets import BucketRef
from pipeline.rule import RuleParams, Threshold, Verdict
from pipeline.stats import Baseline


def bucket_json(ref: BucketRef, tz_name: str) -> dict[str, Any]:
    return {
        "service": ref.service,
        "endpoint": ref.endpoint,
        "hour": ref.bucket.hour,
        "dayType": ref.bucket.day_type,
        "timezone": tz_name,
        "id": ref.id,
    }


def baseline_json(b: Baseline | None, now_ms: int | None = None) -> dict[str, Any] | None:
    if b is None:
        return None
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return {
        "p50": b.p50,
        "p95": b.p95,
        "mad": b.mad,
        "count": b.count,
        "updatedMs": b.updated_ms,
        "ageS": round(max(0, now_ms - b.updated_ms) / 1000, 3),
    }


def threshold_json(t: Threshold | None, p: RuleParams) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "valueMs": t.value_ms,
        "term": t.term,
        "p95TermMs": t.p95_term_ms,
        "madTermMs": t.mad_term_ms,
        "factor": p.factor,
        "k": p.k,
        "minSamples": p.min_samples,
        "floorMs": p.floor_ms,
    }


def verdict_json(v: Verdict, p: RuleParams, tz_name: str) -> dict[str, Any]:
    return {
        "isAnomaly": v.is_anomaly,
        "status": v.status,
        "durationMs": v.duration_ms,
        "bucket": bucket_json(v.ref, tz_name),
        "baseline": baseline_json(v.baseline),
        "threshold": threshold_json(v.threshold, p),
        "reason": v.reason,
    }
