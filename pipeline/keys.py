"""Every Redis name the project uses: streams, groups and the per-bucket keys (DESIGN §3-4).

All keys of one (service, endpoint) share the hash tag `{svc|ep}`, so one Lua call can
touch them atomically and a Redis Cluster spreads endpoints over shards. Names are
percent-escaped for `% { } | :` and control characters, which keeps the tag unambiguous
and the bucket id splittable: `{checkout|POST /pay}:14:weekday`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from pipeline.buckets import TimeBucket, parse_day_type
from pipeline.errors import ConfigError

INGEST_GROUP = "ingest"
RECOMPUTE_GROUP = "recompute"

# Limits on names (characters, before escaping). Real service names are short; endpoint
# names carry a method and a route template. Longer ones are almost always raw URLs with
# IDs in them, which would explode the number of buckets, so they are rejected.
MAX_SERVICE_CHARS = 128
MAX_ENDPOINT_CHARS = 256

_ESCAPED = re.compile(r"[%{}|:\x00-\x1f\x7f]")
_BUCKET_ID = re.compile(r"^\{([^{}|]*)\|([^{}|]*)\}:(\d{1,2}):(weekday|weekend)$")


def escape(name: str) -> str:
    """Percent-escape the characters that would break the hash tag or the id layout."""
    return _ESCAPED.sub(lambda m: f"%{ord(m.group()):02X}", name)


@dataclass(frozen=True, slots=True)
class BucketRef:
    """One baseline bucket: (service, endpoint, hour, day type)."""

    service: str
    endpoint: str
    bucket: TimeBucket

    @property
    def tag(self) -> str:
        return f"{{{escape(self.service)}|{escape(self.endpoint)}}}"

    @property
    def id(self) -> str:
        return f"{self.tag}:{self.bucket.hour}:{self.bucket.day_type}"

    @classmethod
    def parse(cls, bucket_id: str) -> BucketRef:
        m = _BUCKET_ID.fullmatch(bucket_id)
        if m is None or not 0 <= int(m.group(3)) <= 23:
            raise ValueError(f"not a bucket id: {bucket_id!r}")
        bucket = TimeBucket(int(m.group(3)), parse_day_type(m.group(4)))
        return cls(unquote(m.group(1)), unquote(m.group(2)), bucket)


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

    def dur(self, bucket_id: str) -> str:
        """STRING: the sample ring, the last windowSize durations (pipeline/samples.py)."""
        return f"{self.prefix}dur:{bucket_id}"

    def base(self, bucket_id: str) -> str:
        """HASH p50, p95, mad (ms), count, updated_ms."""
        return f"{self.prefix}base:{bucket_id}"

    def mark(self, bucket_id: str) -> str:
        """STRING: the last recompute window in which the bucket was marked dirty."""
        return f"{self.prefix}mark:{bucket_id}"

    def endpoints(self, service: str) -> str:
        """ZSET endpoint -> last seen (unix s): the endpoints a service tracks, for its cap."""
        return f"{self.prefix}endpoints:{{{escape(service)}}}"

    def seen(self, tag: str, trace_id: str) -> str:
        """STRING with TTL: this trace was already counted (dedup)."""
        return f"{self.prefix}seen:{tag}:{trace_id}"

    def base_pattern(self) -> str:
        """SCAN pattern over every baseline of the deployment."""
        return f"{self.prefix}base:*"

    def bucket_id_of_base(self, key: str) -> str:
        return key[len(self.prefix) + len("base:"):]
