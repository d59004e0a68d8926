"""Cluster nodes dying under load: the pipeline (ingest and recompute processes) recovers
by itself.

- A primary SIGKILLed and restarted with its AOF: every trace is counted exactly once
  and every bucket recomputed over exactly its samples.
- With one replica per primary, the primary serving `<p>traces` SIGKILLed for good: its
  replica takes over and the pipeline resumes; no trace is counted twice, every trace
  sent after the failover is counted exactly once, and what asynchronous replication
  lost (writes the dead primary acknowledged but had not yet shipped) is reported.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis as sync_redis

from pipeline.keys import Keys
from tests.cluster.servers import LocalCluster
from tests.reliability.conftest import Proc, Truth, group_state, random_event, report
from tests.reliability.test_6_recompute_crash import all_recomputed
from tests.support import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]
SETTINGS = {"recompute_interval_s": 2, "recompute_claim_idle_s": 3, "ingest_claim_idle_s": 2,
            "ingest_batch_size": 50, "rule_window_size": 100000}
TRACES = 3000


class Producer(threading.Thread):
    """Sends `events` in small pipelines, retrying a chunk until the cluster takes it (a
    retried chunk may land twice: the same trace IDs, which ingest must count once)."""

    def __init__(self, client: sync_redis.RedisCluster, stream: str,
                 events: list[dict[str, str]]) -> None:
        super().__init__(daemon=True)
        self.client, self.stream, self.events = client, stream, events
        self.sent = 0
        self.retries = 0

    def run(self) -> None:
        for i in range(0, len(self.events), 50):
            while True:
                try:
                    with self.client.pipeline(transaction=False) as pipe:
                        for fields in self.events[i : i + 50]:
                            pipe.xadd(self.stream, fields)
                        pipe.execute()
                    break
                except (sync_redis.RedisError, sync_redis.exceptions.RedisClusterException):
                    self.retries += 1
                    time.sleep(0.2)
            self.sent = i + 50
            time.sleep(0.02)


def start_pipeline(spawn: Callable[..., Proc], url: str) -> list[Proc]:
    return [spawn("ingest", redis_url=url, ingest_consumer=f"i{n}", **SETTINGS)
            for n in range(2)] + [spawn("recompute", redis_url=url, ingest_consumer="r",
                                        **SETTINGS)]


def drained(r: sync_redis.RedisCluster, keys: Keys) -> bool:
    try:
        return group_state(r, keys.traces) == (0, 0)
    except sync_redis.RedisError:
        return False


def test_a_primary_killed_and_restarted_under_load(
    cluster: LocalCluster, sredis: sync_redis.RedisCluster, truth: Truth, spawn: Callable[..., Proc]
) -> None:
    rng = random.Random(13)
    keys = truth.keys
    events = [random_event(truth, rng) for _ in range(TRACES)]
    procs = start_pipeline(spawn, cluster.url)
    wait_until("the ingest group", lambda: group_state(sredis, keys.traces) != (-1, -1), 30)
    producer = Producer(cluster.client(), keys.traces, events)
    producer.start()
    wait_until("a third of the traffic", lambda: producer.sent >= TRACES // 3, 60)
    victim = cluster.primary_of(keys.traces)  # the worst one: the trace stream's
    cluster.kill(victim)
    time.sleep(3)  # past the node timeout: the cluster is down for that primary's slots
    cluster.restart(victim)
    wait_until("cluster_state:ok again", cluster.healthy, 60)
    producer.join(120)
    wait_until("the ingest group to drain", lambda: drained(sredis, keys), 90)
    counted = truth.counted(sredis)
    assert counted == truth.expected()
    wait_until("every bucket recomputed", lambda: all_recomputed(sredis, truth), 30)
    assert all(p.alive() for p in procs), [p.log()[-2000:] for p in procs if not p.alive()]
    for proc in procs:
        assert proc.terminate() == 0, proc.log()[-2000:]
    report("cluster_primary_restart", traces_sent=TRACES, buckets=len(counted),
           samples_counted=sum(sum(c.values()) for c in counted.values()),
           producer_retries=producer.retries, counted_twice=0, lost=0)


@pytest.fixture
def replicated(tmp_path: Path) -> LocalCluster:
    c = LocalCluster(tmp_path / "replicated", replicas=1).start()
    try:
        yield c  # type: ignore[misc]
    finally:
        c.stop()


def test_a_primary_replaced_by_its_replica_under_load(
    replicated: LocalCluster, truth: Truth, spawn: Callable[..., Proc]
) -> None:
    rng = random.Random(14)
    keys = truth.keys
    r = replicated.client()
    before = [random_event(truth, rng) for _ in range(TRACES // 2)]
    after = [random_event(truth, rng) for _ in range(TRACES // 2)]
    procs = start_pipeline(spawn, replicated.url)
    wait_until("the ingest group", lambda: group_state(r, keys.traces) != (-1, -1), 30)
    producer = Producer(replicated.client(), keys.traces, before)
    producer.start()
    wait_until("half the first part", lambda: producer.sent >= len(before) // 2, 60)
    victim = replicated.primary_of(keys.traces)
    replicated.kill(victim)  # for good: its replica must take over
    wait_until("the replica to take over", lambda: replicated.healthy()
               and replicated.primary_of(keys.traces) != victim, 60)
    producer.join(120)
    wait_until("the ingest group to drain", lambda: drained(r, keys), 90)
    second = Producer(replicated.client(), keys.traces, after)
    second.start()
    second.join(120)
    wait_until("the ingest group to drain again", lambda: drained(r, keys), 90)

    counted = truth.counted(r)
    assert all(n == 1 for c in counted.values() for n in c.values()), "a trace counted twice"
    after_ids = {e["trace_id"] for e in after}
    assert_subset(truth.expected(after_ids), counted)  # resumed: all of these, exactly once
    lost = sum(sum(c.values()) for c in truth.expected().values()) - sum(
        sum(c.values()) for c in counted.values())
    wait_until("every bucket recomputed", lambda: all_recomputed(r, truth), 30)
    for proc in procs:
        assert proc.terminate() == 0, proc.log()[-2000:]
    report("cluster_failover", traces_sent=TRACES, counted_twice=0,
           lost_to_async_replication=lost, producer_retries=producer.retries)
    r.close()


def assert_subset(expected: dict[str, object], counted: dict[str, object]) -> None:
    from collections import Counter

    for bucket, samples in expected.items():
        have = counted.get(bucket, Counter())
        assert isinstance(samples, Counter) and isinstance(have, Counter)
        assert not samples - have, f"{bucket}: {sum((samples - have).values())} samples missing"

