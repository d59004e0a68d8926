"""Reliability harness: real subprocesses, a private redis-server, ground-truth traces."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from pipeline import samples
from pipeline.buckets import BucketRef, bucket_of
from pipeline.ingest import Ingestor
from pipeline.keys import INGEST_GROUP, Keys
from pipeline.metrics import Metrics
from services import runner
from services.config import Settings
from tests.conftest import REDIS_URL
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("tempo-anomaly"))
ZONE = ZoneInfo("Asia/Taipei")
STOP_WAIT_S = 30.0  # the runner cancels after 15 s; this bounds a hung process in tests
# Fixed hours in the past (2 days ago, aligned): buckets are deterministic per test run.
BASE_NS = (int(time.time()) // 3600 - 48) * 3600 * 1_000_000_000


def report(name: str, **numbers: object) -> None:
    """One line per test with the numbers it saw (pytest -rP or -s shows it)."""
    print(f"RELIABILITY {name} " + " ".join(f"{k}={v}" for k, v in numbers.items()))


# --- ground truth ----------------------------------------------------------------------


@dataclass
class Truth:
    """Every trace sent, with a duration unique to it, so list contents identify traces."""

    keys: Keys
    sent: dict[str, tuple[str, int]] = field(default_factory=dict)  # trace_id -> (bucket, us)
    next_us: int = 1000

    def make(self, service: str, endpoint: str, start_ns: int) -> dict[str, str]:
        trace_id = uuid.uuid4().hex
        us = self.next_us
        self.next_us += 1
        bucket = BucketRef(service, endpoint, bucket_of(start_ns, ZONE)).id
        self.sent[trace_id] = (bucket, us)
        return {"trace_id": trace_id, "service": service, "endpoint": endpoint,
                "start_ns": str(start_ns), "duration_ms": f"{us / 1000:.3f}"}

    def expected(self, trace_ids: object = None) -> dict[str, Counter[int]]:
        chosen = self.sent if trace_ids is None else {t: self.sent[t] for t in trace_ids}
        out: dict[str, Counter[int]] = {}
        for bucket, us in chosen.values():
            out.setdefault(bucket, Counter())[us] += 1
        return out

    def counted(self, r: sync_redis.Redis) -> dict[str, Counter[int]]:
        buckets = {b for b, _us in self.sent.values()}
        return {b: us_counts(r.get(self.keys.dur(b))) for b in buckets}


def us_counts(ring: bytes | None) -> Counter[int]:
    """A sample ring's durations in integer microseconds, counted (float32 ms hold them
    exactly enough: these tests send durations below 8 s)."""
    return Counter(round(ms * 1000) for ms in samples.decode(ring).tolist())


def random_event(truth: Truth, rng: random.Random) -> dict[str, str]:
    service = rng.choice(["checkout", "cart", "search"])
    endpoint = rng.choice(["GET /a", "POST /b"])
    start_ns = BASE_NS + rng.randrange(3) * 3600 * 1_000_000_000 + rng.randrange(10**12)
    return truth.make(service, endpoint, start_ns)


def group_state(r: sync_redis.Redis, stream: str, group: str = INGEST_GROUP) -> tuple[int, int]:
    """(undelivered, pending) of `group`; (-1, -1) when the group does not exist."""
    try:
        groups = r.xinfo_groups(stream)
    except sync_redis.ResponseError:
        return -1, -1
    for g in groups:
        if g["name"] in (group, group.encode()):
            return int(g["lag"] if g["lag"] is not None else -1), int(g["pending"])
    return -1, -1


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def truth(prefix: str) -> Truth:
    return Truth(Keys(prefix))


class Proc:
    """One `tempo-anomaly` subprocess with its stderr kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            [CLI, *args], env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(STOP_WAIT_S)

    def terminate(self, timeout_s: float = STOP_WAIT_S) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout_s)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(STOP_WAIT_S)
        self._log.close()


@pytest.fixture
def spawn(tmp_path: Path, prefix: str, redis_url: str) -> Iterator[Callable[..., Proc]]:
    """Start `tempo-anomaly <command>` with test settings; all are killed at teardown.
    The processes use the `redis_url` fixture's server (a cluster's, under tests/cluster)."""
    procs: list[Proc] = []
    default_url = redis_url

    def start(command: str, redis_url: str = default_url, **settings: object) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TLA_")}
        env.update({"TLA_REDIS_URL": redis_url, "TLA_KEY_PREFIX": prefix,
                    "TLA_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"})
        env.update({f"TLA_{k.upper()}": str(v) for k, v in settings.items()})
        name = f"{command}-{len(procs)}"
        proc = Proc([command], env, tmp_path / f"{name}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


class RedisServer:
    """A redis-server of our own on a free port, for killing and restarting."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra = list(extra)
        self.popen: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.popen = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", str(self.workdir), "--save", "",
             *self.extra],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until("redis-server to answer", self._answers, timeout_s=20)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except (sync_redis.ConnectionError, sync_redis.BusyLoadingError):
            return False

    def client(self) -> sync_redis.Redis:
        return sync_redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(STOP_WAIT_S)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(*extra: str) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}", *extra)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


# --- in-process stages -----------------------------------------------------------------


def settings_for(prefix: str, **env: object) -> Settings:
    """Settings as a process with these TLA_* variables would load them."""
    values = {"TLA_KEY_PREFIX": prefix, "TLA_REDIS_URL": REDIS_URL}
    values.update({f"TLA_{k.upper()}": str(v) for k, v in env.items()})
    return Settings.load(env=values)


def make_ingestor(redis: Redis, prefix: str, consumer: str = "t-ingest",
                  metrics: Metrics | None = None, **env: object) -> Ingestor:
    s = settings_for(prefix, **env)
    return runner.make_ingestor(s, redis, metrics or Metrics(), consumer)


async def drain(ingestor: Ingestor, rounds: int = 50) -> None:
    """Read and handle until the stream has nothing new (bounded)."""
    from pipeline import streams

    await streams.ensure_group(ingestor.redis, ingestor.keys.traces, INGEST_GROUP)
    for _ in range(rounds):
        entries = await streams.read_new(ingestor.redis, ingestor.keys.traces, INGEST_GROUP,
                                         ingestor.consumer, 500, None)
        if not entries:
            return
        await ingestor.handle(entries)
    raise AssertionError("the stream did not drain")
