"""The JSON behind the web view on a real Redis: /v1/endpoints, /v1/baselines (48 buckets),
/v1/anomalies (filters, limits, bounded scans), the token, the pages' assets and
TLA_UI_TRACE_URL; every answer validated against the OpenAPI document."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
import pytest
from redis.asyncio import Redis

from pipeline.buckets import TimeBucket
from pipeline.errors import ConfigError
from pipeline.keys import Keys
from services.api import load_openapi
from services.web import data
from tests.services.web.conftest import TOKEN, TRACE_URL, Serve, Traffic, now_bucket, settings_for

pytestmark = pytest.mark.redis
HOUR_MS = 3_600_000


def nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema (`type: [t, "null"]`)."""
    if isinstance(node, list):
        return [nullable_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: nullable_to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def validate(reply: Any, path: str, status: str = "200") -> None:
    doc = nullable_to_json_schema(load_openapi())
    schema = doc["paths"][path]["get"]["responses"][status]
    if "$ref" in schema:
        schema = doc["components"]["responses"][schema["$ref"].rsplit("/", 1)[1]]
    body = schema["content"]["application/json"]["schema"]
    jsonschema.validate(reply, {**body, "components": doc["components"]})


async def get(client: Any, path: str, status: int = 200, **kw: Any) -> Any:
    response = await client.get(path, **kw)
    reply = await response.json()
    assert response.status == status, reply
    validate(reply, path.partition("?")[0], str(status))
    return reply


async def test_endpoints_list_the_indexes_with_now_and_the_last_hour(
        serve: Serve, traffic: Traffic) -> None:
    now = now_bucket()
    await traffic.endpoint("checkout", "POST /pay")
    await traffic.endpoint("checkout", "GET /cart")
    await traffic.endpoint("auth", "POST /login")
    pay = await traffic.baseline("checkout", "POST /pay", now, 120, 300, 15, 1000)
    cart = await traffic.baseline("checkout", "GET /cart", TimeBucket((now.hour + 1) % 24,
                                                                      now.day_type), 9, 9, 1, 99)
    now_ms = int(time.time() * 1000)
    await traffic.anomaly(pay, "a" * 32, 900, now_ms - 2 * HOUR_MS)  # older than an hour
    await traffic.anomaly(pay, "b" * 32, 900, now_ms - 60_000)
    await traffic.anomaly(pay, "c" * 32, 950)
    await traffic.anomaly(cart, "d" * 32, 500)
    reply = await get(await serve(), "/v1/endpoints")
    assert (reply["hour"], reply["dayType"], reply["timezone"]) == (now.hour, now.day_type,
                                                                    "Asia/Taipei")
    rows = {(e["service"], e["endpoint"]): e for e in reply["endpoints"]}
    assert list(rows) == [("auth", "POST /login"), ("checkout", "GET /cart"),
                          ("checkout", "POST /pay")]
    assert rows[("checkout", "POST /pay")]["baseline"]["p95"] == 300
    assert rows[("checkout", "POST /pay")]["threshold"]["valueMs"] == 600
    assert rows[("checkout", "POST /pay")]["anomaliesLastHour"] == 2
    assert rows[("checkout", "GET /cart")]["baseline"] is None  # learned another hour only
    assert rows[("checkout", "GET /cart")]["anomaliesLastHour"] == 1
    assert rows[("auth", "POST /login")]["anomaliesLastHour"] == 0
    assert not reply["truncated"] and not reply["anomaliesTruncated"]


async def test_endpoints_are_capped_and_say_so(serve: Serve, traffic: Traffic,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "MAX_ENDPOINTS_LISTED", 3)
    for i in range(5):
        await traffic.endpoint("svc", f"GET /{i}", seen_s=1000 + i)
    await traffic.endpoint("old", "GET /", seen_s=10)  # seen longest ago: no room left
    reply = await get(await serve(), "/v1/endpoints")
    assert [e["endpoint"] for e in reply["endpoints"]] == ["GET /2", "GET /3", "GET /4"]
    assert reply["truncated"]


async def test_an_empty_deployment_lists_nothing(serve: Serve) -> None:
    reply = await get(await serve(), "/v1/endpoints")
    assert reply["endpoints"] == [] and reply["minSamples"] == 50


async def test_baselines_give_all_48_buckets(serve: Serve, traffic: Traffic) -> None:
    await traffic.baseline("checkout", "POST /pay", TimeBucket(9, "weekday"), 120, 300, 15, 1000)
    await traffic.baseline("checkout", "POST /pay", TimeBucket(22, "weekend"), 50, 80, 5, 7)
    reply = await get(await serve(), "/v1/baselines",
                      params={"service": "checkout", "endpoint": "POST /pay"})
    cells = {(c["hour"], c["dayType"]): c for c in reply["buckets"]}
    assert len(cells) == 48 and [c["hour"] for c in reply["buckets"][:3]] == [0, 1, 2]
    nine = cells[(9, "weekday")]
    assert nine["baseline"]["p95"] == 300 and nine["baseline"]["count"] == 1000
    assert nine["threshold"]["valueMs"] == 600 and nine["enoughSamples"] is True
    assert nine["id"] == "{checkout|POST /pay}:9:weekday"
    thin = cells[(22, "weekend")]
    assert thin["baseline"]["count"] == 7 and thin["enoughSamples"] is False
    assert sum(c["baseline"] is not None for c in reply["buckets"]) == 2


@pytest.mark.parametrize("query, field", [
    ({"endpoint": "GET /"}, "service"),
    ({"service": "svc"}, "endpoint"),
    ({"service": "s" * 129, "endpoint": "GET /"}, "service"),
])
async def test_baselines_need_a_service_and_an_endpoint(serve: Serve, query: dict[str, str],
                                                        field: str) -> None:
    reply = await get(await serve(), "/v1/baselines", 400, params=query)
    assert reply["field"] == field


async def test_anomalies_newest_first_with_filters_since_and_limit(
        serve: Serve, traffic: Traffic) -> None:
    bucket = now_bucket()
    pay = await traffic.baseline("checkout", "POST /pay", bucket, 100, 200, 10, 500)
    login = await traffic.baseline("auth", "POST /login", bucket, 100, 200, 10, 500)
    now_ms = int(time.time() * 1000)
    first = await traffic.anomaly(pay, "1" * 32, 900, now_ms - 30_000)
    await traffic.anomaly(login, "2" * 32, 901, now_ms - 20_000)
    await traffic.anomaly(pay, "3" * 32, 902, now_ms - 10_000)
    client = await serve()
    reply = await get(client, "/v1/anomalies")
    assert [a["traceId"] for a in reply["anomalies"]] == ["3" * 32, "2" * 32, "1" * 32]
    oldest = reply["anomalies"][-1]
    assert (oldest["id"], oldest["flaggedMs"]) == (first, now_ms - 30_000)
    assert oldest["durationMs"] == 900
    assert oldest["thresholdMs"] == 400 and oldest["term"] == "p95_factor"
    assert oldest["reason"].startswith("900 ms > threshold 400 ms")
    assert oldest["traceUrl"] is None and oldest["bucketId"] == pay.id
    only_pay = await get(client, "/v1/anomalies", params={"service": "checkout"})
    assert [a["traceId"] for a in only_pay["anomalies"]] == ["3" * 32, "1" * 32]
    by_endpoint = await get(client, "/v1/anomalies",
                            params={"service": "auth", "endpoint": "POST /login"})
    assert [a["traceId"] for a in by_endpoint["anomalies"]] == ["2" * 32]
    since = await get(client, "/v1/anomalies", params={"since": str(now_ms - 20_000)})
    assert [a["traceId"] for a in since["anomalies"]] == ["3" * 32, "2" * 32]
    one = await get(client, "/v1/anomalies", params={"limit": "1"})
    assert [a["traceId"] for a in one["anomalies"]] == ["3" * 32] and not one["truncated"]


async def test_a_long_scan_stops_and_says_so(serve: Serve, traffic: Traffic,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "ANOMALY_PAGE", 3)
    monkeypatch.setattr(data, "ANOMALY_SCAN_MAX", 7)
    pay = await traffic.baseline("checkout", "POST /pay", now_bucket(), 100, 200, 10, 500)
    login = await traffic.baseline("auth", "POST /login", now_bucket(), 100, 200, 10, 500)
    await traffic.anomaly(login, "9" * 32, 900)
    for i in range(10):
        await traffic.anomaly(pay, f"{i:032x}", 900)
    client = await serve()
    reply = await get(client, "/v1/anomalies", params={"service": "auth"})
    assert reply["anomalies"] == [] and reply["truncated"]
    reply = await get(client, "/v1/anomalies", params={"limit": "5"})
    assert len(reply["anomalies"]) == 5 and not reply["truncated"]


async def test_a_stray_entry_is_skipped_not_a_500(serve: Serve, traffic: Traffic, redis: Redis,
                                                  keys: Keys) -> None:
    pay = await traffic.baseline("checkout", "POST /pay", now_bucket(), 100, 200, 10, 500)
    await traffic.anomaly(pay, "1" * 32, 900)
    await redis.xadd(keys.anomalies, {"trace_id": "x", "duration_ms": "fast"})
    reply = await get(await serve(), "/v1/anomalies")
    assert [a["traceId"] for a in reply["anomalies"]] == ["1" * 32]


@pytest.mark.parametrize("query, field", [
    ({"since": "-1"}, "since"), ({"since": "soon"}, "since"), ({"since": "²"}, "since"),
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"service": ""}, "service"),
])
async def test_bad_anomaly_queries_are_400_naming_the_field(serve: Serve, query: dict[str, str],
                                                            field: str) -> None:
    reply = await get(await serve(), "/v1/anomalies", 400, params=query)
    assert reply["field"] == field


async def test_trace_links_follow_the_template(serve: Serve, traffic: Traffic) -> None:
    pay = await traffic.baseline("checkout", "POST /pay", now_bucket(), 100, 200, 10, 500)
    await traffic.anomaly(pay, "ab" * 16, 900)
    reply = await get(await serve(TLA_UI_TRACE_URL=TRACE_URL), "/v1/anomalies")
    assert reply["anomalies"][0]["traceUrl"] == TRACE_URL.replace("{traceId}", "ab" * 16)


@pytest.mark.parametrize("url, says", [
    ("grafana/explore?trace={traceId}", "http"), ("https://grafana/explore", "{traceId}")])
def test_a_trace_url_template_is_checked(prefix: str, url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="TLA_UI_TRACE_URL") as e:
        settings_for(prefix, TLA_UI_TRACE_URL=url)
    assert says in str(e.value)


async def test_the_token_guards_the_json_not_the_pages(serve: Serve) -> None:
    client = await serve(TLA_API_TOKEN=TOKEN)
    for path in ("/v1/endpoints", "/v1/baselines?service=a&endpoint=b", "/v1/anomalies"):
        assert (await client.get(path)).status == 401, path
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get(path, headers=auth)).status == 200, path
    for path, kind in (("/", "text/html"), ("/endpoint", "text/html"), ("/anomalies", "text/html"),
                       ("/ui/app.js", "text/javascript"), ("/ui/ui.js", "text/javascript"),
                       ("/ui/heatmap.js", "text/javascript"), ("/ui/style.css", "text/css")):
        response = await client.get(path)
        assert response.status == 200 and response.content_type == kind, path
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    page = await (await client.get("/")).text()
    assert '<script type="module" src="/ui/app.js">' in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere
    assert (await client.head("/ui/app.js")).status == 200
    assert (await client.post("/")).status == 405
