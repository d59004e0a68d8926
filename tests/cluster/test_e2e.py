"""The product end to end (`tempo-anomaly run`, check, baseline, inspect, samples) on a
3-primary Redis Cluster and on a Valkey cluster: known traces in, baselines, verdicts,
a duplicate counted once, a dead letter, an anomaly entry, a clean stop."""

from __future__ import annotations

import pytest
import redis as sync_redis

from tests.cluster.servers import LocalCluster
from tests.services.test_cli_e2e import env  # noqa: F401  (fixture)
from tests.services.test_cli_e2e import test_run_learns_flags_explains_and_stops_cleanly as _e2e

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(params=["redis", "valkey"])
def engine(request: pytest.FixtureRequest) -> LocalCluster:
    """Both engines; conftest's `redis_url` and `sredis` follow this one."""
    name = "cluster" if request.param == "redis" else "valkey_cluster"
    cluster: LocalCluster = request.getfixturevalue(name)
    return cluster


def test_run_on_a_cluster(env: dict[str, str], prefix: str, redis_url: str,  # noqa: F811
                          sredis: sync_redis.RedisCluster) -> None:
    _e2e(env, prefix, redis_url, sredis)
