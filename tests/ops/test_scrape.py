"""A real Prometheus scrapes real `tempo-anomaly` processes (ingest, recompute, api) on the
machine's Redis while traffic flows; the key series must arrive with the right values."""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tests.conftest import REDIS_URL
from tests.ops.test_exposition import promtool_check
from tests.support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.redis]

# Waiting for data to flow, not measuring speed: generous, and only hit on failure.
SETTLE_S = 60.0
SERVICE, ENDPOINT = "checkout", "POST /pay"
NORMAL, SLOW, INVALID = 100, 4, 3


class Stack:
    """Processes started by the test; stopped (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.clients: list[httpx.Client] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=self.workdir)
        log.close()
        self.procs.append((name, proc))

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{(self.workdir / f'{name}.log').read_text()[-3000:]}"
                         for name, _p in self.procs)

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def role_env(prefix: str, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLA_")}
    env.update({
        "TLA_REDIS_URL": REDIS_URL, "TLA_KEY_PREFIX": prefix, "TLA_TIMEZONE": "UTC",
        "TLA_STATE_DIR": str(state_dir),
        "TLA_RECOMPUTE_INTERVAL_S": "2", "TLA_API_CACHE_TTL_S": "1",
        "TLA_RULE_MIN_SAMPLES": "20", "TLA_INGEST_BLOCK_MS": "200",
        "TLA_METRICS_OBSERVE_INTERVAL_S": "1", "TLA_METRICS_PORT": "0",
    })
    env.update(extra)
    return env


def query(client: httpx.Client, promql: str) -> float | None:
    response = client.get("/api/v1/query", params={"query": promql})
    if response.status_code != 200:  # 503 while Prometheus starts
        return None
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def eventually(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool],
               stack: Stack) -> Any:
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            value = probe()
        except httpx.TransportError as e:
            value = e
        if not isinstance(value, Exception) and ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: last value {value!r}\n{stack.logs()}")
        time.sleep(0.25)


def trace(i: int, duration_ms: float, start_ns: int) -> dict[Any, Any]:
    return {"trace_id": uuid.uuid4().hex, "service": SERVICE, "endpoint": ENDPOINT,
            "start_ns": str(start_ns), "duration_ms": f"{duration_ms:.3f}"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def store(prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


def start_prometheus(stack: Stack, binary: str, targets: dict[str, int]) -> httpx.Client:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "tempo-anomaly",
            "static_configs": [{"targets": [f"127.0.0.1:{p}"], "labels": {"role": role}}
                               for role, p in targets.items()],
        }],
    }
    path = stack.workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    stack.start("prometheus", [
        binary, f"--config.file={path}", f"--storage.tsdb.path={stack.workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ], dict(os.environ))
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)


def test_prometheus_scrapes_every_role_with_sane_values(
    prometheus_bin: str, promtool: str, prefix: str, store: redis.Redis, stack: Stack,
    tmp_path: Path,
) -> None:
    cli = [sys.executable, "-m", "services.cli"]
    ports = {"ingest": free_port(), "recompute": free_port(), "api": free_port()}
    api_port = free_port()
    state = tmp_path / "state"
    stack.start("ingest", [*cli, "ingest"],
                role_env(prefix, state, TLA_METRICS_PORT=str(ports["ingest"])))
    stack.start("recompute", [*cli, "recompute"],
                role_env(prefix, state, TLA_METRICS_PORT=str(ports["recompute"])))
    stack.start("api", [*cli, "api"], role_env(
        prefix, state, TLA_METRICS_PORT=str(ports["api"]), TLA_API_PORT=str(api_port)))
    prom = start_prometheus(stack, prometheus_bin, ports)
    stack.clients.append(prom)

    eventually("every role is up", lambda: query(prom, 'sum(up{job="tempo-anomaly"})'),
               lambda v: v == 3, stack)

    # Traffic: normal traces and a few invalid ones, all in the current hour bucket.
    start_ns = time.time_ns()
    for i in range(NORMAL):
        store.xadd(f"{prefix}traces", trace(i, 10 + i % 10, start_ns))
    for i in range(INVALID):
        store.xadd(f"{prefix}traces", {**trace(i, 1, start_ns), "duration_ms": "fast"})
    def base_keys() -> list[Any]:
        return list(store.scan_iter(match=f"{prefix}base:*"))

    eventually("a baseline is written", base_keys, lambda keys: len(keys) == 1, stack)
    time.sleep(2.5)  # ingest and the API cache a missing baseline for one window
    for i in range(SLOW):
        store.xadd(f"{prefix}traces", trace(i, 5000, start_ns))
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=5) as api:
        for duration_ms in (12.0, 15.0, 9000.0):
            body = {"rootServiceName": SERVICE, "rootTraceName": ENDPOINT,
                    "startTimeUnixNano": str(start_ns), "durationMs": duration_ms}
            assert api.post("/v1/anomaly/check", json=body).status_code == 200

    expect = {
        'sum(tla_ingest_events_total{outcome="new"})': NORMAL + SLOW,
        'sum(tla_ingest_events_total{outcome="invalid"})': INVALID,
        "max(tla_dead_letters_entries)": INVALID,
        "sum(tla_ingest_anomalies_total)": SLOW,
        f'max(tla_anomalies_observed_total{{service="{SERVICE}"}})': SLOW,
        'sum(tla_check_requests_total{status="normal"})': 2,
        'sum(tla_check_requests_total{status="anomaly"})': 1,
        "sum(tla_check_duration_seconds_count)": 3,
        'max(tla_stream_group_lag_entries{stream="traces",group="ingest"})': 0,
        'max(tla_stream_group_pending_entries{stream="traces",group="ingest"})': 0,
        'max(tla_stream_group_consumers{stream="traces",group="ingest"})': 1,
    }
    for promql, value in expect.items():
        eventually(promql, partial(query, prom, promql), partial(operator.eq, value), stack)
    eventually("recompute ran", lambda: query(prom, "sum(tla_recompute_buckets_total)"),
               lambda v: v is not None and v >= 1, stack)
    age = eventually("baseline age", lambda: query(prom, "max(tla_baseline_newest_age_seconds)"),
                     lambda v: v is not None and v == v, stack)  # not NaN
    assert 0 <= age < SETTLE_S
    last = query(prom, "max(tla_dead_letter_last_timestamp_seconds)")
    assert last is not None and abs(last - start_ns / 1e9) < SETTLE_S
    window = query(prom, "max(tla_recompute_last_window_timestamp_seconds)")
    assert window is not None and window >= start_ns / 1e9

    # What Prometheus scraped passes promtool, role by role.
    for role, port in ports.items():
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert promtool_check(promtool, text) == "", role
