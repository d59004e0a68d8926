"""Log lines: key=value or JSON, request IDs from the context, secrets masked."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from services import logs


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    """The CLI's configuration, writing to a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    yield buffer
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def configured(fmt: str, buffer: io.StringIO) -> logging.Logger:
    logs.configure("INFO", fmt)
    logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    return logging.getLogger("services.api")


def test_kv_line_carries_the_request_id_inside_a_request(capture: io.StringIO) -> None:
    log = configured("kv", capture)
    with logs.request_context("abc123"):
        log.warning("event=store_unavailable path=%s", "/v1/baseline")
    log.info("event=outside")
    inside, outside = capture.getvalue().splitlines()
    assert inside.endswith("event=store_unavailable path=/v1/baseline request_id=abc123")
    assert "level=WARNING logger=services.api" in inside
    assert "request_id" not in outside


def test_kv_does_not_repeat_a_request_id_already_in_the_message(capture: io.StringIO) -> None:
    log = configured("kv", capture)
    with logs.request_context("abc123"):
        log.error("event=unhandled_error request_id=%s", "abc123")
    assert capture.getvalue().count("request_id=") == 1


def test_json_line_has_request_id_field(capture: io.StringIO) -> None:
    log = configured("json", capture)
    with logs.request_context("r-1"):
        log.info("event=check status=%s", "anomaly")
    body = orjson.loads(capture.getvalue())
    assert body["request_id"] == "r-1" and body["msg"] == "event=check status=anomaly"
    assert body["level"] == "info" and body["logger"] == "services.api"


def test_traceback_stays_below_the_line(capture: io.StringIO) -> None:
    log = configured("kv", capture)
    with logs.request_context("r-2"):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("event=unhandled_error")
    first, *rest = capture.getvalue().splitlines()
    assert first.endswith("event=unhandled_error request_id=r-2")
    assert rest[-1] == "ValueError: boom"


@pytest.mark.parametrize(
    ("message", "leak"),
    [
        ("event=redis url=redis://app:s3cret@redis:6379/0", "s3cret"),
        ("event=tempo url=https://user:hunter2@tempo.example/api", "hunter2"),
        ("event=config password=hunter2 user=bob", "hunter2"),
        ("event=auth token='abc def'", "abc def"),
        ("event=call header=Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x.y", "eyJhbGci"),
    ],
)
def test_secrets_are_masked(capture: io.StringIO, message: str, leak: str) -> None:
    log = configured("kv", capture)
    log.info(message)
    line = capture.getvalue()
    assert leak not in line and "***" in line


def test_plain_urls_and_ordinary_words_untouched() -> None:
    text = "event=redis url=redis://redis:6379/0 tokens_seen=4 reason=token bucket"
    assert logs.mask_secrets(text) == text
