"""The detect stage: incidents (sustained degradation per endpoint) judged in event time.

`detect` holds the pure judgement and state machine, `stage` the consumer loop on
`<p>traces` (group `incidents`) with its Redis state, `settings` and `metrics` its own.
"""

from __future__ import annotations

from pipeline.incidents.settings import IncidentSettings
from pipeline.incidents.stage import Detector

__all__ = ["Detector", "IncidentSettings"]
