"""The example alert rules and the Prometheus config of compose/, checked by promtool."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.ops.conftest import COMPOSE
from tests.ops.exposition import full_exposition, sample_names


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60,
                          cwd=COMPOSE)


def test_promtool_check_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_fire_when_they_should(promtool: str) -> None:
    """alerts.test.yml: lag growing, dead letters appearing, baselines going stale."""
    done = run(promtool, "test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_config(promtool: str) -> None:
    done = run(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_required_alerts_exist_and_query_real_series() -> None:
    rules = yaml.safe_load((COMPOSE / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"TempoAnomalyLagGrowing", "TempoAnomalyDeadLetters", "TempoAnomalyBaselinesStale",
            "TempoAnomalyHighAnomalyRate"} <= names
    known = sample_names(full_exposition()) | {"up"}
    for rule in rules:
        for name in re.findall(r"\b(tla_[a-z0-9_]+|up)\b", rule["expr"]):
            assert name in known, f"{rule['alert']} queries {name}, which no process exposes"
