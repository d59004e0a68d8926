"""`ui.*` (TLA_UI_*): the web view's settings, each declared once."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from pipeline.errors import ConfigError
from pipeline.settings import setting

TRACE_ID_FIELD = "{traceId}"


@dataclass(frozen=True, slots=True)
class UiSettings:
    trace_url: str | None = setting(
        None, "link from a flagged trace ID to Tempo or Grafana: an http(s) URL template "
        "with `{traceId}`, e.g. `http://grafana:3000/explore?left=...{traceId}...`",
        unset="trace IDs shown without a link")

    def validate(self) -> None:
        url = self.trace_url
        if url is None:
            return
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"TLA_UI_TRACE_URL must start with http:// or https://, got {url!r}")
        if TRACE_ID_FIELD not in url:
            raise ConfigError(
                f"TLA_UI_TRACE_URL must contain {TRACE_ID_FIELD} where the trace ID goes, "
                f"got {url!r}")

    def trace_link(self, trace_id: str) -> str | None:
        """The link to one trace (hex IDs need no escaping; anything else is percent-escaped)."""
        if self.trace_url is None:
            return None
        return self.trace_url.replace(TRACE_ID_FIELD, quote(trace_id, safe=""))
