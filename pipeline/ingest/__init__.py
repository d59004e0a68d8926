"""The ingest stage: consumer group `ingest` on `<p>traces` → dedup, rolling samples, dirty marks.

`stage` holds the consumer loop, `batch` turns one batch into one call of `ingest.lua`
(the atomic step: dedup, sample ring, dirty mark, anomaly record, XACK), `settings` its
settings.
"""

from __future__ import annotations

from pipeline.ingest.settings import IngestSettings
from pipeline.ingest.stage import Ingestor

__all__ = ["IngestSettings", "Ingestor"]
