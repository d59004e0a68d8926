"""Every Redis name the project uses: streams, groups and the per-bucket keys (DESIGN §3-4).

All keys of one (service, endpoint) share the hash tag `{svc|ep}` of its bucket ids
(`pipeline.buckets.BucketRef`), so one Lua call can touch them atomically and a Redis
Cluster spreads endpoints over shards.
"""

from __future__ import annotations

from pipeline.buckets import escape
from pipeline.errors import ConfigError

INGEST_GROUP = "ingest"
RECOMPUTE_GROUP = "recompute"
INCIDENTS_GROUP = "incidents"


class Keys:
    """The key and stream names under one deployment prefix."""

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(
                f"key prefix {prefix!r} must not contain '{{' or '}}': they would become the "
                "Redis Cluster hash tag of every key"
            )
        self.prefix = prefix
        self.traces = f"{prefix}traces"
        self.dead = f"{prefix}traces:dead"
        self.dirty = f"{prefix}dirty"
        self.anomalies = f"{prefix}anomalies"
        # ZSET service -> last seen (unix s): the services tracked, for their cap.
        self.services = f"{prefix}services"
        # Counter recompute bumps whenever it writes baselines; API caches poll it to
        # drop stale entries. Outside `base:*` so SCANs over baselines never see it.
        self.base_version = f"{prefix}base-version"
        # tempo-source: last fully covered second, and the single-poller lease.
        self.tempo_watermark = f"{prefix}tempo:watermark"
        # tempo-source and backfill: the ranges of trace start times already published.
        self.tempo_covered = f"{prefix}tempo:covered"
        self.tempo_lease = f"{prefix}tempo:lease"
        # Incidents (pipeline/incidents): the stream of open/update/closed entries; ZSETs
        # of incident ids, open ones scored by start, closed ones by end (unix ms); the
        # intervals waiting for the watermark (member `<tag>:<start ms>`, score start);
        # the stage's event clock (HASH max_event_ms, judged_ms) and its lease.
        self.incidents = f"{prefix}incidents"
        self.incidents_open = f"{prefix}incidents:open"
        self.incidents_closed = f"{prefix}incidents:closed"
        self.incident_intervals = f"{prefix}incidents:intervals"
        self.incidents_clock = f"{prefix}incidents:clock"
        self.incidents_lease = f"{prefix}incidents:lease"

    def dur(self, bucket_id: str) -> str:
        """STRING: the sample ring, the last windowSize durations (pipeline/samples.py)."""
        return f"{self.prefix}dur:{bucket_id}"

    def base(self, baseline_id: str) -> str:
        """HASH p50, p95, mad (ms), count, updated_ms of a bucket id, or of an endpoint's
        all-hours baseline id `{svc|ep}:all` (pipeline/fallback.py): that one lives at
        `<p>base-all:{svc|ep}`, in the endpoint's slot and outside `base:*` SCANs."""
        if baseline_id.endswith("}:all"):
            return f"{self.prefix}base-all:{baseline_id[:-len(':all')]}"
        return f"{self.prefix}base:{baseline_id}"

    def mark(self, bucket_id: str) -> str:
        """STRING: the last recompute window in which the bucket was marked dirty."""
        return f"{self.prefix}mark:{bucket_id}"

    def endpoints(self, service: str) -> str:
        """ZSET endpoint -> last seen (unix s): the endpoints a service tracks, for its cap."""
        return f"{self.prefix}endpoints:{{{escape(service)}}}"

    def seen(self, tag: str, trace_id: str) -> str:
        """STRING with TTL: this trace was already counted (dedup)."""
        return f"{self.prefix}seen:{tag}:{trace_id}"

    def interval(self, tag: str, start_ms: int) -> str:
        """HASH trace_id -> duration ms of one endpoint's event-time interval (a trace
        counted twice is the same field), plus `@bucket` and `@ref` (the baseline when
        the interval began)."""
        return f"{self.prefix}incint:{tag}:{start_ms}"

    def incident_state(self, tag: str) -> str:
        """HASH: one endpoint's detector state (pipeline/incidents/detect.py)."""
        return f"{self.prefix}incstate:{tag}"

    def incident_pending(self, tag: str) -> str:
        """STRING (JSON): one endpoint's judged changes not yet published to `<p>incidents`
        and the open/closed/intervals indexes (pipeline/incidents/stage.py, "Crash safety"
        in docs/incidents.md); gone once published."""
        return f"{self.prefix}incpub:{tag}"

    def incident(self, incident_id: str) -> str:
        """HASH: an incident's latest numbers, the fields of its newest stream entry."""
        return f"{self.prefix}incident:{incident_id}"

    def base_pattern(self) -> str:
        """SCAN pattern over every baseline of the deployment."""
        return f"{self.prefix}base:*"

    def bucket_id_of_base(self, key: str) -> str:
        return key[len(self.prefix) + len("base:"):]
