"""The recompute stage: group `recompute` on `<p>dirty`, baselines per 30 s tumbling window.

`stage` holds the agent's loop, `settings` its settings; `store.lua` writes one chunk of
baselines atomically.
"""

from __future__ import annotations

from pipeline.recompute.settings import RecomputeSettings
from pipeline.recompute.stage import Recomputer

__all__ = ["RecomputeSettings", "Recomputer"]
