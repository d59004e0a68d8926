"""The web view in a real browser (Playwright driving Debian's chromium) against the API
on a real Redis with known traffic: the overview, the heatmap's 48 cells and two known
buckets, a flagged trace arriving in the live list, the check form, the token prompt,
at 1280 px and at a phone's width, by mouse and by keyboard. Screenshots go to pytest's
tmp dir."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, expect

from pipeline.buckets import BucketRef, TimeBucket
from tests.services.web.conftest import (
    DESKTOP,
    PHONE,
    TOKEN,
    TRACE_URL,
    Serve,
    Traffic,
    cell_of,
    now_bucket,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]
WAIT_MS = 15_000  # the pages poll every 3 s (anomalies) to 15 s (overview)


async def open_page(browser: Browser, client: TestClient, path: str,
                    viewport: dict[str, int] = DESKTOP) -> Page:
    page = await browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(str(client.make_url(path)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def known_traffic(traffic: Traffic) -> tuple[BucketRef, BucketRef]:
    """Three endpoints; checkout POST /pay learned at two known buckets, one of them now."""
    now = now_bucket()
    for service, endpoint in (("checkout", "POST /pay"), ("checkout", "GET /cart"),
                              ("auth", "POST /login")):
        await traffic.endpoint(service, endpoint)
    current = await traffic.baseline("checkout", "POST /pay", now, 120, 300, 15, 1000)
    other = TimeBucket((now.hour + 12) % 24, "weekend" if now.day_type == "weekday" else "weekday")
    known = await traffic.baseline("checkout", "POST /pay", other, 40.5, 88, 4, 640)
    await traffic.baseline("checkout", "POST /pay", TimeBucket((now.hour + 6) % 24, now.day_type),
                           10, 20, 1, 7)  # too few samples
    await traffic.baseline("auth", "POST /login", now, 15, 22, 2, 500)
    return current, known


def pay_path() -> str:
    return f"/endpoint?service=checkout&endpoint={quote('POST /pay')}"


async def test_overview_lists_the_endpoints_and_searches(
        browser: Browser, serve: Serve, traffic: Traffic, tmp_path: Path) -> None:
    await known_traffic(traffic)
    client = await serve()
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await open_page(browser, client, "/", viewport)
        rows = page.locator("#endpoint-list tbody tr")
        await expect(rows).to_have_count(3)
        pay = page.locator('tr[data-endpoint="POST /pay"]')
        await expect(pay).to_contain_text("300 ms")
        await expect(pay).to_contain_text("1000")
        await expect(page.locator("#incidents")).to_be_empty()  # /v1/incidents: 404 here
        await page.screenshot(path=tmp_path / f"overview-{name}.png", full_page=True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        await page.fill("#search", "auth")
        await expect(rows).to_have_count(1)
        await expect(page.locator("#match-count")).to_have_text("1 of 3 endpoints")
        assert page.errors == []  # type: ignore[attr-defined]
        await page.close()


async def test_open_incidents_come_first_when_the_api_has_them(
        browser: Browser, serve: Serve, traffic: Traffic) -> None:
    await known_traffic(traffic)
    page = await open_page(browser, await serve(), "/")
    await expect(page.locator("#endpoint-list tbody tr")).to_have_count(3)
    body = ('{"incidents": [{"service": "checkout", "endpoint": "POST /pay", "state": "open", '
            '"startedMs": 1764396000000, "endedMs": null, "reason": "p95 doubled for 10 min"}]}')
    await page.route("**/v1/incidents*", lambda route: route.fulfill(
        status=200, content_type="application/json", body=body))
    await page.reload()
    incidents = page.locator("#incidents")
    await expect(incidents).to_contain_text("Open incidents (1)")
    await expect(incidents).to_contain_text("p95 doubled for 10 min")
    first = await page.locator("main section").first.get_attribute("class")
    assert first == "incidents"


async def test_heatmap_has_48_cells_with_the_known_buckets(
        browser: Browser, serve: Serve, traffic: Traffic, tmp_path: Path) -> None:
    current, known = await known_traffic(traffic)
    client = await serve()
    page = await open_page(browser, client, pay_path())
    cells = page.locator(".heatmap .cell")
    await expect(cells).to_have_count(48)
    now_cell = cell_of(page, current.bucket)
    await expect(now_cell).to_have_text("300")
    label = await now_cell.get_attribute("aria-label")
    assert label is not None
    for part in ("p95 300 ms", "p50 120 ms", "MAD 15.0 ms", "1000 samples", "threshold 600 ms"):
        assert part in label, label
    await expect(now_cell).to_have_class(re.compile(r"\bnow\b"))
    known_cell = cell_of(page, known.bucket)
    await expect(known_cell).to_have_text("88")
    known_label = await known_cell.get_attribute("aria-label") or ""
    for part in ("p95 88.0 ms", "p50 40.5 ms", "MAD 4.00 ms", "640 samples", "threshold 176 ms"):
        assert part in known_label, known_label
    await expect(page.locator(".cell.thin")).to_have_count(1)
    await expect(page.locator(".cell.thin")).to_have_text("n=7")
    await expect(page.locator(".cell.empty")).to_have_count(45)
    await known_cell.hover()
    await expect(page.locator("#cell-detail")).to_contain_text("40.5 ms")
    await page.screenshot(path=tmp_path / "endpoint-desktop.png", full_page=True)
    await page.close()
    phone = await open_page(browser, client, pay_path(), PHONE)
    await expect(phone.locator(".heatmap .cell")).to_have_count(48)
    first = await cell_of(phone, TimeBucket(0, "weekday")).bounding_box()
    second = await cell_of(phone, TimeBucket(1, "weekday")).bounding_box()
    assert first and second and second["y"] > first["y"] + 10  # transposed: hours go down
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await phone.screenshot(path=tmp_path / "endpoint-phone.png", full_page=True)
    assert page.errors == [] and phone.errors == []  # type: ignore[attr-defined]


async def test_the_keyboard_reaches_every_part(browser: Browser, serve: Serve,
                                               traffic: Traffic) -> None:
    current, _ = await known_traffic(traffic)
    page = await open_page(browser, await serve(), pay_path())
    await expect(page.locator(".heatmap .cell")).to_have_count(48)
    focused: list[str] = []
    for _ in range(12):  # skip link, nav, crumbs, then the one heatmap cell in tab order
        await page.keyboard.press("Tab")
        focused.append(await page.evaluate(
            "document.activeElement.className + ':' + (document.activeElement.dataset.hour || '')"))
        if focused[-1].startswith("cell"):
            break
    assert focused[-1] == f"cell now:{current.bucket.hour}", focused
    await page.keyboard.press("ArrowRight")
    next_hour = (current.bucket.hour + 1) if current.bucket.hour < 23 else 23
    assert await page.evaluate("document.activeElement.dataset.hour") == str(next_hour)
    await expect(page.locator("#cell-detail")).to_contain_text(f"{next_hour:02d}:00")
    await page.keyboard.press("Tab")  # out of the grid: to the check form
    assert await page.evaluate("document.activeElement.id") == "check-ms"
    await page.keyboard.type("5000")
    await page.keyboard.press("Enter")
    await expect(page.locator("#check-result")).to_contain_text("Anomalous", timeout=WAIT_MS)


async def test_the_check_form_answers(browser: Browser, serve: Serve, traffic: Traffic) -> None:
    await known_traffic(traffic)
    page = await open_page(browser, await serve(), pay_path())
    result = page.locator("#check-result")
    await page.fill("#check-ms", "912")
    await page.click("#check-form button")
    await expect(result).to_contain_text("Anomalous: 912 ms > threshold 600 ms")
    await page.fill("#check-ms", "150")
    await page.click("#check-form button")
    await expect(result).to_contain_text("normal: 150 ms")


async def test_a_flagged_trace_arrives_in_the_recent_list_with_its_reason(
        browser: Browser, serve: Serve, traffic: Traffic, tmp_path: Path) -> None:
    current, _ = await known_traffic(traffic)
    login = BucketRef("auth", "POST /login", current.bucket)
    await traffic.anomaly(login, "1" * 32, 700)
    page = await open_page(browser, await serve(TLA_UI_TRACE_URL=TRACE_URL), "/anomalies")
    rows = page.locator("#recent-anomalies tr")
    await expect(rows).to_have_count(1)
    await traffic.anomaly(current, "ab" * 16, 912)
    newest = rows.first
    await expect(newest).to_have_attribute("data-trace-id", "ab" * 16, timeout=WAIT_MS)
    await expect(newest).to_contain_text("912 ms > threshold 400 ms")
    link = newest.locator("a.trace")
    await expect(link).to_have_attribute("href", TRACE_URL.replace("{traceId}", "ab" * 16))
    await expect(page.locator("#live")).to_contain_text("1 new anomaly")
    await page.screenshot(path=tmp_path / "anomalies-desktop.png", full_page=True)
    await page.select_option("#service-filter", "auth")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-trace-id", "1" * 32)
    assert "service=auth" in page.url
    endpoint_page = await open_page(browser, await serve(), pay_path())
    listed = endpoint_page.locator("#endpoint-anomalies tr")
    await expect(listed).to_have_count(1)
    await expect(listed.first).to_contain_text("912 ms > threshold 400 ms")
    assert page.errors == [] and endpoint_page.errors == []  # type: ignore[attr-defined]


async def test_the_token_prompt_guards_the_pages(browser: Browser, serve: Serve,
                                                 traffic: Traffic, tmp_path: Path) -> None:
    await known_traffic(traffic)
    client = await serve(TLA_API_TOKEN=TOKEN)
    page = await open_page(browser, client, "/")
    dialog = page.locator("#token-dialog")
    await expect(dialog).to_be_visible()
    assert await page.locator("#endpoint-list tbody tr").count() == 0
    await page.screenshot(path=tmp_path / "token-prompt.png")
    await page.keyboard.press("Escape")  # no way around it
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_visible()
    await page.fill("#token-input", "wrong")
    await page.keyboard.press("Enter")
    await expect(page.locator("#token-error")).to_contain_text("refused")
    await page.fill("#token-input", TOKEN)
    await page.keyboard.press("Enter")
    await expect(page.locator("#endpoint-list tbody tr")).to_have_count(3)
    await expect(dialog).to_be_hidden()
    await page.click("nav >> text=Recent anomalies")  # asked once: the tab remembers it
    await expect(page.locator("h1")).to_have_text("Recent anomalies")
    await expect(dialog).to_be_hidden()
