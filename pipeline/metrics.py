"""Prometheus metrics on an injected registry (never the global one): the series every
stage shares, and the parts mechanism through which each stage registers its own.

Most series are prometheus_client's own. The two the check API updates per request
(`tla_check_requests_total`, `tla_check_duration_seconds`) are `StatusCounter` and
`PlainHistogram`: plain Python numbers on the hot path, turned into the very same
exposition by the registry at scrape time (a collector, so no flush hook: the API's
/metrics and the metrics stage's listener both read them live). prometheus_client's
own types take a threading lock and three Python layers per update (~1.6 us a check).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter
from prometheus_client import metrics as _client_metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

P = TypeVar("P")

# Label cardinality bound of per-service series: the first MAX_SERVICE_LABELS service
# names get their own series, later ones share OTHER_SERVICE.
MAX_SERVICE_LABELS = 50
OTHER_SERVICE = "other"


class ServiceLabels:
    """The `service` label value of a per-service series, capped (see MAX_SERVICE_LABELS)."""

    def __init__(self, cap: int = MAX_SERVICE_LABELS) -> None:
        self.cap = cap
        self._seen: set[str] = set()

    def __call__(self, service: str) -> str:
        if service not in self._seen:
            if len(self._seen) >= self.cap:
                return OTHER_SERVICE
            self._seen.add(service)
        return service


class Metrics:
    """A process's registry with the series every stage shares. Each stage's own series
    are a part, `metrics.part(IngestMetrics)`: a class taking the registry, created and
    registered the first time the process asks for it, so a process exports the
    families of the stages it runs and no others."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._parts: dict[type, object] = {}
        r = self.registry
        self.reclaimed = Counter(
            "tla_stream_reclaimed_total", "Pending entries taken over from idle consumers",
            ["stream"], registry=r,
        )
        self.redis_errors = Counter(
            "tla_redis_errors_total", "Redis errors seen by a stage (retried)",
            ["stage"], registry=r,
        )
        self.stage_restarts = Counter(
            "tla_stage_restarts_total", "Stages restarted after an unexpected error",
            ["stage"], registry=r,
        )

    def part(self, cls: Callable[[CollectorRegistry], P]) -> P:
        """The process's one `cls(registry)`, registered on first use."""
        got = self._parts.get(cls)  # type: ignore[call-overload]
        if got is None:
            got = self._parts[cls] = cls(self.registry)  # type: ignore[index]
        return cast(P, got)


def _created_series() -> bool:
    """Whether `_created` samples are exported: prometheus_client's own switch
    (PROMETHEUS_DISABLE_CREATED_SERIES, disable_created_metrics()), which it keeps only
    as a module attribute; read at scrape time so both kinds of metric follow it."""
    return bool(getattr(_client_metrics, "_use_created", True))


class _CountChild:
    """`counter.labels(value)`: what `Counter(...).labels(value)` offers, `inc`."""

    __slots__ = ("_counts", "_value")

    def __init__(self, counts: dict[str, float], value: str) -> None:
        self._counts = counts
        self._value = value

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._counts[self._value] += amount


class StatusCounter(Collector):
    """A counter with one label whose children are the floats of `counts`.

    Exposed exactly as `Counter(name, documentation, [labelname])` would be (`_total`
    and `_created` per child, children in creation order). A hot path that made its
    children with `labels()` adds to `counts[value]` directly; everyone else calls
    `labels(value).inc()`.

    Thread safety: updates are meant for one thread (the API's event loop, where its
    /metrics and the metrics stage's listener also run). A scrape on another thread
    takes a snapshot of the dict in one C call, so it never fails, and sees each child
    as of some moment during the scrape."""

    def __init__(self, name: str, documentation: str, labelname: str,
                 registry: CollectorRegistry) -> None:
        self._name = name.removesuffix("_total")  # the family name, as Counter has it
        self._documentation = documentation
        self._labelnames = (labelname,)  # as Counter names it (tests read it)
        self.counts: dict[str, float] = {}
        self._created: dict[str, float] = {}
        registry.register(self)

    def labels(self, value: str) -> _CountChild:
        if value not in self.counts:
            self._created[value] = time.time()
            self.counts[value] = 0.0
        return _CountChild(self.counts, value)

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._documentation, "counter")]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._name, self._documentation, "counter")
        created = _created_series()
        for value, count in list(self.counts.items()):
            labels = {self._labelnames[0]: value}
            metric.add_sample(self._name + "_total", labels, count)
            if created:
                metric.add_sample(self._name + "_created", labels, self._created[value])
        return [metric]


class PlainHistogram(Collector):
    """`Histogram(name, documentation, buckets=...)` (no labels) as a list of per-bucket
    counts and a float sum: `observe` is a bisect and two additions.

    Exposed exactly as prometheus_client's Histogram: cumulative `_bucket`s up to
    `le="+Inf"`, `_count`, `_sum`, `_created`. A value goes into the first bucket whose
    bound is >= it (`le` semantics), as there; the one difference is NaN, which lands in
    the first bucket instead of none (durations measured by a clock are never NaN).

    Thread safety: one writing thread (the API's event loop). A scrape on another
    thread copies the counts in one C call; its `_sum` may include or miss an
    observation that its counts do not (one observation apart at most)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("histogram buckets must be in sorted order")
        if not bounds or bounds[-1] != INF:
            bounds.append(INF)
        self._name = name
        self._documentation = documentation
        self._labelnames: tuple[str, ...] = ()
        self._bounds = tuple(bounds)
        self._les: list[str] = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        self._created = time.time()
        registry.register(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._documentation, "histogram")]

    def collect(self) -> Iterable[Metric]:
        counts = list(self._counts)
        metric = Metric(self._name, self._documentation, "histogram")
        acc = 0.0
        for le, count in zip(self._les, counts, strict=True):
            acc += count
            metric.add_sample(self._name + "_bucket", {"le": le}, acc)
        metric.add_sample(self._name + "_count", {}, acc)
        if self._bounds[0] >= 0:  # as prometheus_client: no sum when values can be < 0
            metric.add_sample(self._name + "_sum", {}, self._sum)
        if _created_series():
            metric.add_sample(self._name + "_created", {}, self._created)
        return [metric]
