"""Thin buckets: which baseline judges a bucket that has fewer than minSamples samples.

The levels, tried in order, each used only when its baseline has minSamples:

1. `neighbour_hour`: the hour before and the hour after, same day type (around midnight
   too: 23:00 and 01:00 for 00:00); of the two that qualify, the one with more samples
   (the earlier hour on a tie);
2. `other_day_type`: the same hour of the other day type (weekday for weekend);
3. `endpoint`: the endpoint's all-hours baseline, `<p>base-all:{svc|ep}`, which recompute
   keeps from all of the endpoint's sample rings (pipeline/recompute/endpoints.py).

No level with minSamples: the seed's verdict (`no_baseline` or `insufficient_samples`).
With `rule.fallback` off nothing here is consulted. A fallback costs the check path and
ingest a few more lookups of baselines the store usually holds in its cache, and only for
thin buckets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

from pipeline.baselines import BaselineStore, Miss
from pipeline.buckets import BucketRef
from pipeline.rule import Fallback, Level, RuleParams, needs_fallback
from pipeline.stats import Baseline

# The suffix of an endpoint's all-hours baseline id, `{svc|ep}:all` (a bucket id ends in
# its day type, so the two never collide).
ALL_HOURS = "all"
ENDPOINT_WHAT = "the endpoint's all-hours baseline"
# Refs whose candidate ids are remembered (building ids escapes names, which is slow).
MAX_CACHED_REFS = 65_536

Candidate = tuple[Level, str, str]  # (level, baseline id, how the reason names it)


def endpoint_id(tag: str) -> str:
    """The all-hours baseline id of the endpoint whose hash tag is `tag`."""
    return f"{tag}:{ALL_HOURS}"


def is_endpoint_id(baseline_id: str) -> bool:
    return baseline_id.endswith("}:" + ALL_HOURS)


@lru_cache(maxsize=MAX_CACHED_REFS)
def candidates(ref: BucketRef) -> tuple[Candidate, ...]:
    """The fallback baselines of `ref`, in the order they are tried."""
    hour, day_type, tag = ref.bucket.hour, ref.bucket.day_type, ref.tag
    other = "weekend" if day_type == "weekday" else "weekday"
    out: list[Candidate] = []
    for h in ((hour - 1) % 24, (hour + 1) % 24):
        out.append(("neighbour_hour", f"{tag}:{h}:{day_type}",
                    f"the neighbouring hour {h:02d}:00 {day_type}"))
    out.append(("other_day_type", f"{tag}:{hour}:{other}",
                f"the same hour on {other}s ({hour:02d}:00 {other})"))
    out.append(("endpoint", endpoint_id(tag), ENDPOINT_WHAT))
    return tuple(out)


def choose(ref: BucketRef, found: Mapping[str, Baseline | None],
           params: RuleParams) -> Fallback | None:
    """The first level whose baseline has min_samples, or None (pure: the rule's choice)."""
    best: Fallback | None = None
    for level, baseline_id, what in candidates(ref):
        baseline = found.get(baseline_id)
        if baseline is None or baseline.count < params.min_samples:
            continue
        if level == "neighbour_hour":
            if best is None or baseline.count > best.baseline.count:
                best = Fallback(level, baseline_id, what, baseline)
            continue
        if best is not None:
            return best
        return Fallback(level, baseline_id, what, baseline)
    return best


async def resolve(store: BaselineStore, refs: Iterable[BucketRef],
                  own: Mapping[str, Baseline | None], params: RuleParams) -> dict[str, Fallback]:
    """The fallback of each thin bucket among `refs` (by bucket id) that has one.

    `own` holds each bucket's own baseline. Buckets with min_samples cost one comparison;
    a thin bucket four lookups, from the store's cache when it holds them."""
    if not params.fallback:
        return {}
    thin = [ref for ref in refs if needs_fallback(own[ref.id], params)]
    if not thin:
        return {}
    ids = list(dict.fromkeys(c[1] for ref in thin for c in candidates(ref)))
    found: dict[str, Baseline | None] = {}
    missing: list[str] = []
    for baseline_id in ids:
        hit = store.cached(baseline_id)
        if isinstance(hit, Miss):
            missing.append(baseline_id)
        else:
            found[baseline_id] = hit
    if missing:
        found.update(await store.get_many(missing))
    out: dict[str, Fallback] = {}
    for ref in thin:
        chosen = choose(ref, found, params)
        if chosen is not None:
            out[ref.id] = chosen
    return out
