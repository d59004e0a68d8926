"""Logging set-up (called by the CLI only): one line per event, key=value or JSON, with the
request ID of the API request being served and secrets masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import orjson

# The API binds this around each request (ContextVar.set/reset in services.http's guard, which
# is cheaper than a generator context manager per request; `request_context` for other
# callers), so every line logged while serving it, in any module, carries `request_id=`.
REQUEST_ID: ContextVar[str | None] = ContextVar("tla_request_id", default=None)

# Credentials that can reach a log line by accident: URL userinfo, key=value secrets,
# bearer tokens. Masked before formatting; the event itself stays readable.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", re.IGNORECASE)
_SECRET_KV = re.compile(
    r"\b(password|passwd|secret|token|api_key|authorization)=('[^']*'|\"[^\"]*\"|\S+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _SECRET_KV.sub(r"\1=***", text)
    return _BEARER.sub(r"\1 ***", text)


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class ContextFilter(logging.Filter):
    """Adds `request_id` to every record and masks secrets in the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class KeyValueFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid and "request_id=" not in record.getMessage():
            head, sep, tail = line.partition("\n")  # keep a traceback below the line
            line = f"{head} request_id={rid}{sep}{tail}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            body["request_id"] = rid
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body).decode()


def configure(level: str = "INFO", fmt: str = "kv") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what the API logs itself.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
