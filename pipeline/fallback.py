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


class Fallbacks:
    """`resolve` for one store and rule, each thin bucket's answer remembered while the
    store's cache holds still: the same own baseline, nothing dropped from the cache
    (`epoch`), none of the entries it was chosen from expired. Then a thin bucket costs
    one dict lookup, as a bucket with min_samples does (ingest asks once per bucket per
    batch: 300 thin buckets cost ~1.1 ms per batch unremembered, ~0.15 ms remembered)."""

    def __init__(self, store: BaselineStore, params: RuleParams,
                 max_memo: int = MAX_CACHED_REFS) -> None:
        self.store = store
        self.params = params
        self._max = max_memo
        # bucket id -> (store epoch, valid until, own baseline, the answer)
        self._memo: dict[str, tuple[int, float, Baseline | None, Fallback | None]] = {}

    async def __call__(self, buckets: Iterable[tuple[BucketRef, str]],
                       own: Mapping[str, Baseline | None]) -> dict[str, Fallback]:
        """The fallback of each thin bucket among `buckets` ((ref, its id) pairs: building
        an id escapes names) that has one, by bucket id."""
        params = self.params
        if not params.fallback:
            return {}
        out: dict[str, Fallback] = {}
        todo: list[tuple[BucketRef, str]] = []
        now, epoch, memo = self.store.now(), self.store.epoch, self._memo
        for ref, bucket_id in buckets:
            baseline = own[bucket_id]
            if baseline is not None and baseline.count >= params.min_samples:
                continue  # not thin: its own baseline judges
            hit = memo.get(bucket_id)
            if hit is not None and hit[0] == epoch and hit[1] > now and hit[2] is baseline:
                if hit[3] is not None:
                    out[bucket_id] = hit[3]
            else:
                todo.append((ref, bucket_id))
        if todo:
            found = await resolve(self.store, todo, own, params)
            out.update(found)
            self._remember(todo, own, found)
        return out

    def _remember(self, buckets: list[tuple[BucketRef, str]],
                  own: Mapping[str, Baseline | None], found: Mapping[str, Fallback]) -> None:
        if len(self._memo) >= self._max:
            self._memo.clear()
        store, epoch = self.store, self.store.epoch
        for ref, bucket_id in buckets:
            until = min(store.expires(c[1]) for c in candidates(ref))
            if until > 0:  # every entry it was chosen from is cached
                self._memo[bucket_id] = (epoch, until, own[bucket_id], found.get(bucket_id))


async def resolve(store: BaselineStore, buckets: Iterable[tuple[BucketRef, str]],
                  own: Mapping[str, Baseline | None], params: RuleParams) -> dict[str, Fallback]:
    """The fallback of each thin bucket among `buckets` ((ref, id) pairs) that has one,
    by bucket id.

    `own` holds each bucket's own baseline. Buckets with min_samples cost one comparison;
    a thin bucket four lookups, from the store's cache when it holds them."""
    if not params.fallback:
        return {}
    thin = [(ref, i) for ref, i in buckets if needs_fallback(own[i], params)]
    if not thin:
        return {}
    ids = list(dict.fromkeys(c[1] for ref, _i in thin for c in candidates(ref)))
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
    for ref, bucket_id in thin:
        chosen = choose(ref, found, params)
        if chosen is not None:
            out[bucket_id] = chosen
    return out
