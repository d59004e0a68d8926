"""The HTTP side of Tempo: an httpx async client for /api/search and buildinfo, with auth.

Errors (plain-text bodies, TEMPO_API.md §4.3) are sorted into two branches, so callers
choose between "wait and retry" and "an operator must fix something":

    TLAError
     └── TempoError
          ├── TempoUnavailable   timeouts, refused connections, 429, 5xx, unreadable 200s
          └── TempoRejected      400/401/403/404…: the URL, credentials or query are wrong
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import orjson

from pipeline.errors import ConfigError, TLAError
from pipeline.tempo_source.parse import SearchPage, parse_search

log = logging.getLogger(__name__)

# Error bodies are logged; a proxy's HTML error page should not flood the log.
BODY_LOG_CHARS = 300
# Connecting is quick or hopeless; reading a search over a long range can take a while.
CONNECT_TIMEOUT_S = 5.0
USER_AGENT = "tempo-latency-anomaly/0.1"


class TempoError(TLAError):
    """Tempo did not give a usable answer."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # the `kind` label of tla_tempo_errors_total


class TempoUnavailable(TempoError):
    """Transient: back off (with jitter) and try again."""

    def __init__(self, kind: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(kind, message)
        self.retry_after_s = retry_after_s


class TempoRejected(TempoError):
    """Tempo refused the request; retrying unchanged will not help. `hint` says what to fix."""

    def __init__(self, status: int, body: str, hint: str) -> None:
        super().__init__(f"http_{status}", f"Tempo answered {status}: {body!r}; {hint}")
        self.status = status
        self.body = body
        self.hint = hint


@dataclass(frozen=True, slots=True)
class SearchQuery:
    q: str
    start_s: int  # unix seconds, as every Tempo version accepts
    end_s: int
    limit: int
    spss: int


def _hint(status: int, body: str) -> str:
    text = body.lower()
    if status == 401 or "no org id" in text:
        return ("Tempo needs a tenant or credentials: set TLA_TEMPO_TENANT (X-Scope-OrgID) "
                "for multi-tenant Tempo, or TLA_TEMPO_USER + TLA_TEMPO_PASSWORD / "
                "TLA_TEMPO_TOKEN behind a gateway or on Grafana Cloud")
    if status == 403:
        return ("the credentials are not allowed to read traces: on Grafana Cloud use an "
                "access-policy token with the traces:read scope and the stack's Tempo user")
    if status == 404:
        return ("no Tempo API at this URL: check TLA_TEMPO_URL (query-frontend HTTP port, "
                "default 3200; Grafana Cloud URLs end in /tempo)")
    if "limit" in text:
        return "lower TLA_TEMPO_LIMIT to the server's max_result_limit"
    if "spans per span set" in text:
        return "lower TLA_TEMPO_SPSS (Tempo's max_spans_per_span_set defaults to 100)"
    if "traceql" in text or "parse error" in text:
        return "fix TLA_TEMPO_QUERY (TraceQL; '{ nestedSetParent < 0 }' needs Tempo 2.5+)"
    return "check TLA_TEMPO_URL, TLA_TEMPO_QUERY and the credentials"


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= BODY_LOG_CHARS else flat[:BODY_LOG_CHARS] + "…"


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None  # absent, or an HTTP date: the backoff decides


def check_url(url: str) -> str:
    """The base URL, validated: http(s), a host, no credentials inside (they would be logged)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"TLA_TEMPO_URL must be http(s)://host[:port][/prefix], got {url!r}")
    if parts.username or parts.password:
        raise ConfigError("TLA_TEMPO_URL must not carry credentials: use TLA_TEMPO_USER and "
                          "TLA_TEMPO_PASSWORD (basic auth) or TLA_TEMPO_TOKEN (bearer)")
    return url.rstrip("/")


class TempoClient:
    """One connection pool to one Tempo (or a gateway in front of it). Close with aclose()."""

    def __init__(
        self, url: str, *, tenant: str | None = None, user: str | None = None,
        password: str | None = None, token: str | None = None, timeout_s: float = 10.0,
        verify_tls: bool = True, ca_file: str | None = None,
    ) -> None:
        self.url = check_url(url)
        if token and user:
            raise ConfigError("set either TLA_TEMPO_TOKEN (bearer) or TLA_TEMPO_USER + "
                              "TLA_TEMPO_PASSWORD (basic auth), not both")
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        if token:
            headers["Authorization"] = f"Bearer {token}"
        auth = httpx.BasicAuth(user, password or "") if user else None
        verify = _tls(verify_tls, ca_file)  # a bad CA file fails here, at start-up
        self._open: Callable[[], httpx.AsyncClient] = lambda: httpx.AsyncClient(
            base_url=self.url + "/", headers=headers, auth=auth, verify=verify,
            timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
            follow_redirects=False,
        )
        self._http = self._open()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool; a later request opens a new one (a restarted stage reuses us)."""
        await self._http.aclose()

    async def buildinfo(self) -> dict[str, Any]:
        """GET /api/status/buildinfo → {"version": "3.0.3", ...}."""
        body = await self._get_json("api/status/buildinfo", {})
        if not isinstance(body, dict):
            raise TempoUnavailable("bad_response", "buildinfo is not a JSON object")
        return body

    async def search(self, query: SearchQuery) -> SearchPage:
        params = {"q": query.q, "start": str(query.start_s), "end": str(query.end_s),
                  "limit": str(query.limit), "spss": str(query.spss)}
        body = await self._get_json("api/search", params)
        try:
            return parse_search(body)
        except (ValueError, TypeError) as e:
            raise TempoUnavailable("bad_response", f"unreadable search response: {e}") from e

    async def _get_json(self, path: str, params: dict[str, str]) -> Any:
        if self._http.is_closed:
            self._http = self._open()
        try:
            response = await self._http.get(path, params=params)
        except httpx.TimeoutException as e:
            raise TempoUnavailable(
                "timeout", f"Tempo timed out on /{path}: {type(e).__name__}") from e
        except httpx.TransportError as e:
            raise TempoUnavailable("connect", f"cannot reach Tempo at {self.url}: {e!r}") from e
        status = response.status_code
        if status == 429:
            raise TempoUnavailable(
                "http_429", f"Tempo is overloaded (429): {_clip(response.text)!r}",
                _retry_after_s(response))
        if status >= 500:
            raise TempoUnavailable("http_5xx", f"Tempo failed ({status}): {_clip(response.text)!r}",
                                   _retry_after_s(response))
        if status != 200:
            body = _clip(response.text)
            if 300 <= status < 400:
                body = f"redirect to {response.headers.get('Location', '?')}"
            raise TempoRejected(status, body, _hint(status, body))
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as e:
            raise TempoUnavailable(
                "bad_response", f"Tempo sent non-JSON on /{path}: {_clip(response.text)!r}"
            ) from e


def _tls(verify: bool, ca_file: str | None) -> ssl.SSLContext | bool:
    if not verify:
        return False
    if ca_file:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"TLA_TEMPO_CA_FILE {ca_file!r} is not a readable CA bundle: {e}") from e
    return True
