"""The product as users run it: `tempo-anomaly` processes, signals, the CLI talking to the API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from tests.conftest import REDIS_URL
from tests.support import free_port, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]
BIN = [sys.executable, "-m", "services.cli"]
ROOT = Path(__file__).parents[2]


@pytest.fixture
def env(prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    out = {**os.environ, "TLA_KEY_PREFIX": prefix, "TLA_API_PORT": str(port),
           "TLA_RECOMPUTE_INTERVAL_S": "2", "TLA_API_CACHE_TTL_S": "1",
           "TLA_STATE_DIR": str(tmp_path / "state"), "TLA_CONFIG": ""}
    out.pop("TLA_REDIS_URL", None)
    yield out
    client = redis_sync.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def api_up(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_run_learns_flags_explains_and_stops_cleanly(
    env: dict[str, str], prefix: str, redis_url: str, sredis: redis_sync.Redis
) -> None:
    """Also run on a Redis Cluster and a Valkey cluster (tests/cluster/test_e2e.py), with
    the fixtures pointed there."""
    env = {**env, "TLA_REDIS_URL": redis_url}
    proc = subprocess.Popen([*BIN, "run"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until("the API", lambda: api_up(env["TLA_API_PORT"]), 20)
        r = sredis
        now = time.time_ns()
        for i in range(80):
            r.xadd(f"{prefix}traces", {"trace_id": f"{i + 1:x}", "service": "checkout",
                                       "endpoint": "POST /pay", "start_ns": str(now),
                                       "duration_ms": str(100 + i % 7)})
        r.xadd(f"{prefix}traces", {"trace_id": "1", "service": "checkout",  # a duplicate
                                   "endpoint": "POST /pay", "start_ns": str(now),
                                   "duration_ms": "100"})
        r.xadd(f"{prefix}traces", {"trace_id": "zz", "service": "checkout"})
        check = [*BIN, "check", "--service", "checkout", "--endpoint", "POST /pay",
                 "--duration-ms", "900", "--start-ns", str(now)]

        def flagged() -> bool:
            done = subprocess.run(check, env=env, cwd=ROOT, text=True, capture_output=True)
            return done.stdout.startswith("ANOMALY: 900 ms > threshold")

        wait_until("a baseline that flags 900 ms", flagged, 20)
        base = subprocess.run([*BIN, "baseline", "--service", "checkout", "--endpoint", "POST /pay"],
                              env=env, cwd=ROOT, text=True, capture_output=True)
        assert "n=80" in base.stdout, base.stdout + base.stderr
        inspect = subprocess.run([*BIN, "inspect"], env=env, cwd=ROOT, text=True,
                                 capture_output=True)
        assert "1 dead letters" in inspect.stdout and "trace_id" in inspect.stdout
        ring = subprocess.run([*BIN, "samples", "--service", "checkout", "--endpoint", "POST /pay",
                               "--last", "3"], env=env, cwd=ROOT, text=True, capture_output=True)
        assert ": 80 samples (window 1000)" in ring.stdout, ring.stdout + ring.stderr
        assert ring.stdout.rstrip().endswith("(ms): 100 101 102"), ring.stdout  # i = 77, 78, 79
        r.xadd(f"{prefix}traces", {"trace_id": "5105", "service": "checkout",
                                   "endpoint": "POST /pay", "start_ns": str(now),
                                   "duration_ms": "900"})
        wait_until("the slow trace in the anomalies stream",
                   lambda: r.xlen(f"{prefix}anomalies") == 1, 20)
        assert r.xrange(f"{prefix}anomalies")[0][1][b"trace_id"].endswith(b"5105")
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "event=shutdown signal=SIGTERM" in out and "Traceback" not in out
    assert r.xpending(f"{prefix}traces", "ingest")["pending"] == 0
    assert r.xinfo_groups(f"{prefix}traces")[0]["consumers"] == 0


def test_stage_commands_need_a_redis_url(env: dict[str, str]) -> None:
    done = subprocess.run([*BIN, "ingest"], env=env, cwd=ROOT, text=True, capture_output=True)
    assert done.returncode == 2 and "set TLA_REDIS_URL" in done.stderr


def test_bad_setting_exits_2_with_the_variable_name(env: dict[str, str]) -> None:
    done = subprocess.run([*BIN, "run"], env={**env, "TLA_RULE_K": "x"}, cwd=ROOT, text=True,
                          capture_output=True)
    assert done.returncode == 2 and "TLA_RULE_K" in done.stderr


def test_demo_on_the_embedded_store_shows_anomalies(env: dict[str, str]) -> None:
    proc = subprocess.Popen([*BIN, "demo"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("ANOMALY"):
                break
    finally:
        code, rest = stop(proc)
    flagged = [line for line in lines if line.startswith("ANOMALY")]
    assert flagged, "".join(lines)
    assert " > threshold " in flagged[0] and "n=" in flagged[0]
    assert code == 0
