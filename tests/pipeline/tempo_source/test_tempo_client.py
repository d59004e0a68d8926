"""The httpx client against the Tempo-like server: auth, tenancy, error bodies, timeouts."""

from __future__ import annotations

import logging
import time

import pytest
from tempo_fake import FakeTempo, Fault, make_traces

from pipeline.tempo_source.client import SearchQuery, TempoClient, TempoRejected, TempoUnavailable


def query(limit: int = 20, spss: int = 1, span_s: int = 600) -> SearchQuery:
    now = int(time.time())
    return SearchQuery("{ nestedSetParent < 0 }", now - span_s, now, limit, spss)


async def test_buildinfo_and_a_search_with_numbers_or_strings() -> None:
    async with FakeTempo("2.9.1", numbers="mixed") as tempo:
        now = time.time()
        tempo.traces = make_traces(5, now - 300, now - 10)
        async with TempoClient(tempo.url) as client:
            assert (await client.buildinfo())["version"] == "2.9.1"
            page = await client.search(query())
    assert page.returned == 5 and not page.malformed
    assert {t.trace_id for t in page.traces} == {t.trace_id for t in tempo.traces}
    sent = tempo.searches[0]
    assert sent["start"].isdigit() and sent["end"].isdigit() and sent["spss"] == "1"


async def test_tenant_header_is_required_and_sent() -> None:
    async with FakeTempo(tenant="team-a") as tempo:
        async with TempoClient(tempo.url) as client:
            with pytest.raises(TempoRejected) as e:
                await client.search(query())
        assert e.value.status == 401 and e.value.body == "no org id"
        assert "TLA_TEMPO_TENANT" in e.value.hint and e.value.kind == "http_401"
        async with TempoClient(tempo.url, tenant="team-a") as client:
            assert (await client.search(query())).returned == 0


async def test_basic_and_bearer_auth_and_no_secret_in_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeTempo(basic=("123456", "glc_s3cret")) as tempo:
        async with TempoClient(tempo.url, user="123456", password="glc_s3cret") as client:
            await client.search(query())
        async with TempoClient(tempo.url, user="123456", password="wrong-pw") as client:
            with pytest.raises(TempoRejected) as e:
                await client.search(query())
        assert e.value.status == 403 and "traces:read" in e.value.hint
    async with FakeTempo(bearer="tok-XYZ") as tempo:
        async with TempoClient(tempo.url, token="tok-XYZ", tenant="t") as client:
            await client.search(query())
        assert tempo.auth_headers[-1] == {"Authorization": "Bearer tok-XYZ", "X-Scope-OrgID": "t"}
    text = caplog.text + str(e.value)
    for secret in ("glc_s3cret", "wrong-pw", "tok-XYZ", "Authorization"):
        assert secret not in text


@pytest.mark.parametrize("limit,spss,span_s,body", [
    (0, 1, 600, "invalid limit: must be a positive number"),
    (20, 101, 600, "spans per span set exceeds 100. received 101"),
    (20, 1, 170 * 3600, "range specified by start and end exceeds 168h0m0s"),
])
async def test_bad_parameters_are_plain_text_400s(limit: int, spss: int, span_s: int,
                                                  body: str) -> None:
    async with FakeTempo() as tempo, TempoClient(tempo.url) as client:
        with pytest.raises(TempoRejected) as e:
            await client.search(query(limit, spss, span_s))
    assert e.value.status == 400 and e.value.body.startswith(body)


async def test_transient_failures_are_unavailable_with_their_kind() -> None:
    async with FakeTempo() as tempo, TempoClient(tempo.url) as client:
        tempo.faults.extend([
            Fault(429, "too many outstanding requests", {"Retry-After": "2"}),
            Fault(500, "cannot guarantee complete results"),
            Fault(502, "<html><body>Bad Gateway</body></html>", content_type="text/html"),
            Fault(200, "<html>login</html>", content_type="text/html"),
        ])
        kinds = []
        for _ in range(4):
            with pytest.raises(TempoUnavailable) as e:
                await client.search(query())
            kinds.append((e.value.kind, e.value.retry_after_s))
        assert (await client.search(query())).returned == 0
    assert kinds == [("http_429", 2.0), ("http_5xx", None), ("http_5xx", None),
                     ("bad_response", None)]


async def test_slow_answers_time_out_and_refused_connections_are_transient() -> None:
    async with FakeTempo() as tempo:
        tempo.delay_s = 1.0
        async with TempoClient(tempo.url, timeout_s=0.2) as client:
            with pytest.raises(TempoUnavailable) as e:
                await client.search(query())
        assert e.value.kind == "timeout"
        url = tempo.url
    async with TempoClient(url) as client:  # the server is gone: nothing listens
        with pytest.raises(TempoUnavailable) as e:
            await client.search(query())
    assert e.value.kind == "connect"


async def test_a_url_prefix_is_kept_and_unknown_routes_are_rejected_with_a_hint() -> None:
    async with FakeTempo() as tempo, TempoClient(tempo.url + "/tempo") as client:
        with pytest.raises(TempoRejected) as e:
            await client.search(query())
    assert e.value.status == 404 and "TLA_TEMPO_URL" in e.value.hint


async def test_a_closed_client_reopens_for_a_restarted_stage() -> None:
    async with FakeTempo() as tempo:
        client = TempoClient(tempo.url)
        await client.aclose()
        assert (await client.buildinfo())["version"] == "3.0.3"
        await client.aclose()
