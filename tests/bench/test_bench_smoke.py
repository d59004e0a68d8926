"""Every benchmark still runs: each in `--smoke` mode prints its table and writes its JSON.

Speed is never asserted here (DESIGN §8): the figures live in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TLA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# module, words its table must print, keys its JSON figures must hold
BENCHMARKS = [
    ("ingest", ["ceiling", "project", "events/s", "week"],
     ["hour_producer", "week_producer"]),
    ("check_api", ["bare", "bare+project-middleware", "project-app", "bare-lowlevel",
                   "bare+project-dispatch", "project", "req/s", "p99 ms", "median x bare",
                   "others %"],
     ["bare", "project-app", "bare-lowlevel", "project", "project-nocache", "project-batch100",
      "ratio_project_vs_bare", "ratio_project_app_vs_bare", "ratio_project_vs_bare_lowlevel",
      "round_ratio_project_app_vs_bare", "round_ratio_project_vs_bare_lowlevel"]),
    ("recompute", ["recompute window", "buckets/s"],
     ["buckets", "window_s", "buckets_per_s", "fetch_only_s"]),
    ("memory", ["bytes/sample", "bytes/trace"], ["samples", "seen"]),
    ("scaling", ["consumers", "events/s"], ["runs", "project_speedup_2_vs_1"]),
    ("producers", ["plain XADD", "otlp receiver", "kafka source", "spans/s", "events/s"],
     ["xadd", "otlp", "kafka", "ratio_otlp_events_vs_xadd", "ratio_kafka_events_vs_xadd"]),
    # Starts its own local 3-primary cluster (--redis-url is the single node's: not used).
    ("cluster", ["ceiling", "project", "events/s per primary", "XREADGROUP"],
     ["ceiling", "project", "ratio_project_vs_ceiling", "stream_limits"]),
]

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.mark.parametrize(("module", "words", "keys"), BENCHMARKS, ids=[b[0] for b in BENCHMARKS])
def test_benchmark_smoke(module: str, words: list[str], keys: list[str], tmp_path: Path) -> None:
    if module == "check_api" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    out = tmp_path / f"{module}.json"
    url = [] if module == "cluster" else ["--redis-url", REDIS_URL]
    done = subprocess.run(
        [sys.executable, "-m", f"scripts.bench.{module}", "--smoke", "--json", str(out), *url],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for word in words:
        assert word in done.stdout, done.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == module
    assert doc["machine"]["cpus"] >= 1
    for key in keys:
        assert key in doc["figures"], sorted(doc["figures"])
