"""`tempo-anomaly incidents` against a running API, and `tempo-anomaly detect` as its own
process: traffic in, an incident out, a clean stop."""

from __future__ import annotations

import subprocess

import orjson
import pytest
import redis as redis_sync
from redis.asyncio import Redis

from pipeline.keys import Keys
from tests.conftest import REDIS_URL
from tests.pipeline.incidents.test_stage import WEEK_AGO_MS, store_baselines, traffic, xadd_all
from tests.services.test_cli_e2e import BIN, ROOT, api_up, env, stop  # noqa: F401 (fixture)
from tests.services.test_incidents_api import two_incidents
from tests.support import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_incidents_command_lists_what_the_api_answers(
    env: dict[str, str], redis: Redis, keys: Keys  # noqa: F811
) -> None:
    await two_incidents(redis, keys)
    env = {**env, "TLA_REDIS_URL": REDIS_URL, "TLA_KEY_PREFIX": keys.prefix}
    api = subprocess.Popen([*BIN, "api"], env=env, cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until("the API", lambda: api_up(env["TLA_API_PORT"]), 20)
        listed = subprocess.run([*BIN, "incidents", "--since", "30d"], env=env, cwd=ROOT,
                                text=True, capture_output=True)
        lines = listed.stdout.splitlines()
        assert listed.returncode == 0, listed.stderr
        assert lines[0].startswith("OPEN    cart POST /pay degraded since ")
        assert lines[1].startswith("CLOSED  checkout POST /pay was degraded ")
        recent = subprocess.run([*BIN, "incidents", "--since", "1h", "--json"], env=env,
                                cwd=ROOT, text=True, capture_output=True)
        assert [i["service"] for i in orjson.loads(recent.stdout)["incidents"]] == ["cart"]
        bad = subprocess.run([*BIN, "incidents", "--since", "soon"], env=env, cwd=ROOT,
                             text=True, capture_output=True)
        assert bad.returncode == 2 and "--since" in bad.stderr
    finally:
        code, out = stop(api)
    assert code == 0, out


async def test_detect_role_opens_an_incident_and_stops_cleanly(
    env: dict[str, str], redis: Redis, keys: Keys  # noqa: F811
) -> None:
    await store_baselines(redis, keys, WEEK_AGO_MS, 1)
    env = {**env, "TLA_REDIS_URL": REDIS_URL, "TLA_KEY_PREFIX": keys.prefix}
    proc = subprocess.Popen([*BIN, "detect"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await xadd_all(redis, keys, traffic(WEEK_AGO_MS, 12, slow=(2, 12), factor=3.0))
        sync = redis_sync.Redis.from_url(REDIS_URL)
        wait_until("an incident", lambda: sync.xlen(keys.incidents) > 0, 30)
        sync.close()
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "event=incident_opened" in out and "Traceback" not in out
    entry, *_updates = await redis.xrange(keys.incidents)
    assert entry[1][b"state"] == b"open"
    assert int(entry[1][b"started_ms"]) == WEEK_AGO_MS + 2 * 60_000
