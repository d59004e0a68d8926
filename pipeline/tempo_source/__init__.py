"""The Tempo source: poll Tempo's search API and publish one `<p>traces` entry per trace.

`client` speaks Tempo's HTTP API, `parse` turns its JSON into trace events, `harvest`
covers a time window (search, bisect on truncation, publish, retry in place), `state`
holds the lease, watermark and coverage in Redis (Lua beside it), `stage` is the leader's
poll loop, `backfill` the one-off history pull; `settings` and `metrics` are the stage's.
"""

from __future__ import annotations

from pipeline.tempo_source.settings import TempoSettings
from pipeline.tempo_source.stage import TempoSource

__all__ = ["TempoSettings", "TempoSource"]
