"""Check verdicts as JSON, precompiled per (bucket, baseline): the API's per-request work.

`verdict_json(evaluate(...))` rebuilds the bucket id (regex escaping), the threshold, the
explanation and five dicts for every request, which costs more than aiohttp itself. A
baseline changes once per recompute window at most, so everything except the duration,
the comparison and the baseline's age is built once per (bucket, baseline) and reused.
The output is the same JSON, key for key (tests/services/test_verdict_cache.py compares
it with `verdict_json(evaluate(...))`). A thin bucket judged on a fallback is compiled the
same way, against the fallback's baseline, and recompiled when either baseline changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from pipeline.buckets import BucketRef
from pipeline.metrics import StatusCounter
from pipeline.rule import Fallback, RuleParams, evaluate, explanation, ms
from pipeline.stats import Baseline
from services.views import (
    baseline_json,
    bucket_json,
    threshold_json,
    verdict_baseline_id,
    verdict_json,
)

# Buckets whose compiled verdicts are kept; past this the cache starts over (a few
# thousand endpoints x 48 buckets is the realistic working set of one API process).
MAX_BUCKETS = 50_000
STATUSES = ("anomaly", "normal", "no_baseline", "insufficient_samples")


@dataclass(slots=True)
class _Compiled:
    ref: BucketRef  # its holiday shows in the verdict: same id, another day
    baseline: Baseline | None  # the bucket's own
    fallback: Fallback | None
    used: Baseline | None  # the baseline the verdict shows: the fallback's or the own
    judged: bool  # count >= min_samples: the verdict depends on the duration
    status: str  # the verdict's status when not judged
    threshold_ms: float
    # The verdict's JSON around its variable parts (duration, baseline age, reason), for
    # `verdict_bytes`. Every verdict is  head + duration + mid + baseline + ...:
    # head: '{"isAnomaly":..,"status":..,"durationMs":', one per status;
    head: bytes  # the unjudged status's
    anomaly_head: bytes
    normal_head: bytes
    mid: bytes  # ',"bucket":{..},"baseline":'
    # ... + end, unjudged: ',"threshold":..,"reason":"<constant reason>"}';
    end: bytes
    # ... + judged_tail + ms(duration) + gt_end or le_end, judged: the reason's JSON
    # around its duration (JSON escapes character by character, and ms() writes only
    # ASCII digits, '.', 'e+-' and ' ms'): ',"threshold":..,"reason":"' then
    # ' > <explanation>"}' or ' <= <explanation>"}'.
    judged_tail: bytes
    gt_end: bytes
    le_end: bytes
    # baseline_json without ageS, serialized up to '"ageS":'; empty when no baseline shows.
    base_head: bytes
    # baseline_json's JSON as of `aged_ms`: ageS has millisecond resolution, so requests
    # within the same millisecond share it.
    aged_ms: int = -1
    aged_json: bytes = b"null"


class VerdictCache:
    """`verdict_bytes(...)` == `orjson.dumps(verdict_json(evaluate(...)))`, cheaply."""

    def __init__(self, rule: RuleParams, tz_name: str, counter: StatusCounter | None = None,
                 max_buckets: int = MAX_BUCKETS) -> None:
        self.rule = rule
        self.tz_name = tz_name
        self._max = max_buckets
        self._compiled: dict[str, _Compiled] = {}
        # Every status exported from the start (0 until seen); counted as plain floats.
        self._counts: dict[str, float] = dict.fromkeys(STATUSES, 0.0)
        if counter is not None:
            for status in STATUSES:
                counter.labels(status)
            self._counts = counter.counts

    def verdict_bytes(self, ref: BucketRef, bucket_id: str, baseline: Baseline | None,
                      duration_ms: float, fallback: Fallback | None = None) -> bytes:
        """The verdict's JSON from pre-serialized parts: a check builds and serializes no
        dict. `fallback`: what judges a thin bucket (pipeline/fallback.py), if anything."""
        c = self._compiled.get(bucket_id)
        if (c is None or (c.baseline is not baseline and c.baseline != baseline)
                or (c.fallback is not fallback and c.fallback != fallback)
                or (c.ref is not ref and c.ref != ref)):
            c = self._compile(ref, bucket_id, baseline, fallback)
        if c.base_head:
            now_ms = int(time.time() * 1000)
            if now_ms != c.aged_ms:  # ageS has millisecond resolution: rarely rebuilt
                assert c.used is not None
                age_s = round(max(0, now_ms - c.used.updated_ms) / 1000, 3)
                c.aged_json = c.base_head + orjson.dumps(age_s) + b"}"
                c.aged_ms = now_ms
        counts = self._counts
        if not c.judged:
            counts[c.status] += 1
            return b"".join((c.head, orjson.dumps(duration_ms), c.mid, c.aged_json, c.end))
        if duration_ms > c.threshold_ms:
            counts["anomaly"] += 1
            return b"".join((c.anomaly_head, orjson.dumps(duration_ms), c.mid, c.aged_json,
                             c.judged_tail, ms(duration_ms).encode(), c.gt_end))
        counts["normal"] += 1
        return b"".join((c.normal_head, orjson.dumps(duration_ms), c.mid, c.aged_json,
                         c.judged_tail, ms(duration_ms).encode(), c.le_end))

    def _compile(self, ref: BucketRef, bucket_id: str, baseline: Baseline | None,
                 fallback: Fallback | None) -> _Compiled:
        if len(self._compiled) >= self._max:
            self._compiled.clear()
        probe = evaluate(0.0, ref, baseline, self.rule, self.tz_name, fallback)
        template = verdict_json(probe, self.rule, self.tz_name)
        # None also when the count is 0
        base = baseline_json(probe.baseline, verdict_baseline_id(probe), probe.level)
        judged = probe.status in ("normal", "anomaly")
        tail = ""
        threshold_ms = 0.0
        if judged:
            assert probe.threshold is not None
            threshold_ms = probe.threshold.value_ms
            tail = explanation(probe.threshold, ref, self.tz_name, self.rule, baseline,
                               probe.fallback)
        bucket, threshold = bucket_json(ref, self.tz_name), threshold_json(probe.threshold,
                                                                           self.rule)
        heads = {status: b'{"isAnomaly":%s,"status":%s,"durationMs":' % (
            orjson.dumps(status == "anomaly"), orjson.dumps(status)) for status in STATUSES}
        threshold_part = b',"threshold":' + orjson.dumps(threshold) + b',"reason":'
        explained = orjson.dumps(tail)[1:]  # '<explanation>"'
        c = _Compiled(ref, baseline, fallback, probe.baseline, judged, template["status"],
                      threshold_ms, heads[template["status"]], heads["anomaly"], heads["normal"],
                      b',"bucket":' + orjson.dumps(bucket) + b',"baseline":',
                      threshold_part + orjson.dumps(template["reason"]) + b"}",
                      threshold_part + b'"', b" > " + explained + b"}",
                      b" <= " + explained + b"}",
                      orjson.dumps({**base, "ageS": 0})[:-2] if base is not None else b"")
        self._compiled[bucket_id] = c
        return c
