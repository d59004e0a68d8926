"""Fixtures of the Tempo source tests: settings and metrics (Redis and the prefix come from
tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import pytest

from pipeline.metrics import Metrics
from pipeline.tempo_source.settings import TempoSettings
from services.config import Settings


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def make_settings(prefix: str, url: str, **tempo: object) -> Settings:
    """Fast test settings: short interval and lookback, small limit, no hidden seconds."""
    base: dict[str, object] = {
        "url": url, "interval_s": 0.1, "lookback_s": 10, "limit": 20, "timeout_s": 2.0,
        "lease_ttl_s": 1.0, "end_cutoff_s": 1.0, "max_catchup_s": 3600,
    }
    base.update(tempo)
    settings = TempoSettings(**base)  # type: ignore[arg-type]
    return dataclasses.replace(Settings(), key_prefix=prefix, tempo=settings)


@pytest.fixture
def settings_for(prefix: str) -> Callable[..., Settings]:
    """settings_for(url, **tempo) → Settings under this test's key prefix."""
    return functools.partial(make_settings, prefix)
