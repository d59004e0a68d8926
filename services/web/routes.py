"""The web view's routes: the pages and their assets (public: they hold no data), and the
JSON behind them (bearer token like every API route). Handlers stay thin: parse the
query, ask `WebData`, answer JSON.

Why the assets need no token: a browser sends no `Authorization` header when it loads a
page or its `<script>`, so a guarded page could only be opened with the token in the URL
or a cookie, both of which leak it further than the bearer header. The pages hold no data:
everything they show comes from the `/v1/` JSON, which refuses requests without the token;
the page asks for it once and keeps it in the tab's sessionStorage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from pipeline.buckets import MAX_ENDPOINT_CHARS, MAX_SERVICE_CHARS
from pipeline.errors import InvalidEvent
from services.checks import string_field
from services.http import Route, ServerContext, int_param, json_response
from services.web import read_asset
from services.web.data import AnomalyQuery, WebData

DEFAULT_ANOMALIES = 100
MAX_ANOMALIES = 1000
# Pages name each other by path (/endpoint?service=&endpoint=, /anomalies); every one is
# the same document, whose script renders the view its path names.
PAGES = ("/", "/endpoint", "/anomalies")
ASSETS = {"/ui/app.js": ("app.js", "text/javascript"),
          "/ui/ui.js": ("ui.js", "text/javascript"),
          "/ui/heatmap.js": ("heatmap.js", "text/javascript"),
          "/ui/style.css": ("style.css", "text/css")}
# The pages load nothing from elsewhere, run no inline script and may not be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release's assets are picked up at once; they are a few kB.
    "Cache-Control": "no-cache",
}


@dataclass(slots=True, kw_only=True)
class WebContext(ServerContext):
    """What the web view's handlers use (the API's context extends it)."""

    web: WebData
    assets: Mapping[str, tuple[bytes, str]]  # path -> (body, content type)


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Every page and asset by path, read once from the package."""
    page = read_asset("index.html")
    out = {path: (page, "text/html") for path in PAGES}
    out.update({path: (read_asset(name), kind) for path, (name, kind) in ASSETS.items()})
    return out


async def asset(ctx: WebContext, request: web.BaseRequest) -> web.Response:
    body, kind = ctx.assets[request.rel_url.path_safe]
    return web.Response(body=body, content_type=kind, charset="utf-8", headers=PAGE_HEADERS)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def endpoints(ctx: WebContext, request: web.BaseRequest) -> web.Response:
    return json_response(await ctx.web.endpoints(_now_ms()))


async def baselines(ctx: WebContext, request: web.BaseRequest) -> web.Response:
    q = dict(request.query)
    service = string_field(q, "service", MAX_SERVICE_CHARS)
    endpoint = string_field(q, "endpoint", MAX_ENDPOINT_CHARS)
    return json_response(await ctx.web.baselines(service, endpoint, _now_ms()))


async def anomalies(ctx: WebContext, request: web.BaseRequest) -> web.Response:
    return json_response(await ctx.web.anomalies(anomaly_query(request.query)))


def anomaly_query(q: Mapping[str, str]) -> AnomalyQuery:
    """`since` (unix ms, default 0), `service`, `endpoint`, `limit` (1-1000, default 100)."""
    filters = {name: string_field(dict(q), name, max_chars)
               for name, max_chars in (("service", MAX_SERVICE_CHARS),
                                       ("endpoint", MAX_ENDPOINT_CHARS)) if name in q}
    return AnomalyQuery(since_ms=int_param(q, "since", 0, 0, 2**53),
                        limit=int_param(q, "limit", DEFAULT_ANOMALIES, 1, MAX_ANOMALIES),
                        **filters)


ROUTES: tuple[Route[WebContext], ...] = (
    *(Route("GET", path, asset, public=True) for path in (*PAGES, *ASSETS)),
    Route("GET", "/v1/endpoints", endpoints),
    Route("GET", "/v1/baselines", baselines),
    Route("GET", "/v1/anomalies", anomalies),
)
