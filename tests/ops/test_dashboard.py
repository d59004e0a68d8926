"""The Grafana dashboard: every series it queries exists, every query parses, panels fit."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.ops.conftest import COMPOSE
from tests.ops.exposition import full_exposition, sample_names

DASHBOARD = COMPOSE / "grafana" / "dashboards" / "tempo-anomaly.json"
PROVISIONING = COMPOSE / "grafana" / "provisioning"
# Prometheus' own series the dashboard may use besides ours.
PROMETHEUS_SERIES = {"up"}
# PromQL words that look like metric names in an expression.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "deriv",
    "histogram_quantile", "time", "and", "or", "unless", "le", "on", "ignoring", "offset",
}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def series_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers and strings removed)."""
    bare = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", bare))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("$")}


def test_covers_what_operators_need() -> None:
    text = " ".join(expr for _t, expr in queries())
    for series in ("tla_ingest_events_total", "tla_stream_group_lag_entries",
                   "tla_stream_group_pending_entries", "tla_dead_letters_entries",
                   "tla_check_duration_seconds_bucket", "tla_anomalies_observed_total",
                   "tla_baseline_newest_age_seconds"):
        assert series in text, f"the dashboard shows no {series}"


def test_every_queried_series_is_exposed() -> None:
    known = sample_names(full_exposition()) | PROMETHEUS_SERIES
    missing = {(title, name) for title, expr in queries() for name in series_in(expr)
               if name not in known}
    assert missing == set()


def test_series_extraction_sees_through_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(tla_check_duration_seconds_bucket'
            '{job="x"}[$__rate_interval]))) / time()')
    assert series_in(expr) == {"tla_check_duration_seconds_bucket"}


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    """Each expression as a recording rule: promtool rejects any PromQL syntax error."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "1m")}
             for i, (_t, expr) in enumerate(queries())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_datasources_resolve_to_provisioned_ones() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yaml").read_text())
    by_uid = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    assert by_uid == {"prometheus": "prometheus", "tempo": "tempo"}
    variable = dashboard()["templating"]["list"][0]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"]["value"] in by_uid
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_provider_points_where_compose_mounts_it() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts


def test_panels_are_laid_out_without_overlap() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
