"""The one HTTP layer of the API and the metrics listener: routes, the request guard, the
one error path, bounded bodies, and the probes both serve (/healthz, /readyz, /metrics).

A `Router` is a handler for aiohttp's low-level server (`web.Server`, public API:
https://docs.aiohttp.org/en/stable/web_lowlevel.html): the request's path, then its method,
picks the route from two dicts. `web.Application` resolves every request through its
URL dispatcher, match info and app chain first; on it, with its guard as one middleware,
the API measured 0.72 x the bare handler, against 0.84 here (BENCHMARKS.md, check API).
What its router answered is kept, and tested in tests/services/test_http.py: JSON 404,
405 with `Allow`, HEAD on GET routes, paths matched as the router matches them,
`Expect: 100-continue`.

Every route runs behind its guard: a request ID (the client's `X-Request-ID`, or a
per-router random prefix and a counter) bound to the log context and sent back on the
response; the bearer token unless the route is public; and `error_response`, the one place
an exception becomes an HTTP answer, never a stack trace:

    InvalidEvent        400  {"error", "field"}
    Unauthorized        401
    web.HTTPException   its status (404, 405 with Allow, 413)
    StoreUnavailable    503
    ConnectionError     400  (the client went away mid-body; logged, nobody reads it)
    anything else       500  {"error", "requestId"}, logged with its traceback
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from aiohttp import web
from aiohttp.http import HttpVersion11
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline import cluster
from pipeline.errors import ConfigError, InvalidEvent, StoreUnavailable
from pipeline.metrics import Metrics
from services.health import Health
from services.logs import REQUEST_ID

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 1.0
# aiohttp's own `client_max_size`: for a server whose routes read no body.
DEFAULT_MAX_BODY_BYTES = 1024**2
REQUEST_ID_MAX_CHARS = 64


@dataclass(slots=True, kw_only=True)
class ServerContext:
    """What every route of a server may use: the probes' collaborators, the bearer token
    non-public routes require (None: none), the request body limit."""

    redis: Redis
    metrics: Metrics
    health: Health
    token: bytes | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


C = TypeVar("C", bound=ServerContext)
C_contra = TypeVar("C_contra", bound=ServerContext, contravariant=True)

# A route's handler: the server's context and the request in, a response out. Bodies are
# read with `read_body`, never `request.read()`: the low-level server's requests keep
# aiohttp's 1 MiB limit, not the context's `max_body_bytes`.
Handler = Callable[[C_contra, web.BaseRequest], Awaitable[web.StreamResponse]]
# What the guard makes of one: the request in, a response out, nothing raised.
Guarded = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route(Generic[C_contra]):
    """`method path` served by `handler`; a public route needs no bearer token."""

    method: str
    path: str
    handler: Handler[C_contra]
    public: bool = False


class Unauthorized(Exception):
    """No bearer token, or the wrong one, on a route that is not public."""


class Router(Generic[C]):
    """`await router(request)` runs the guarded handler of the request's path and method;
    `router.server()` is the low-level server for it.

    A GET route answers HEAD too. A known path with no route for the method answers 405
    with `Allow`, any other path 404, both guarded like the routes (JSON error, auth unless
    the path is public, `X-Request-ID`). Paths are matched as aiohttp's router matches them:
    percent-decoded except for an encoded "/" or "%" (`path_safe`)."""

    def __init__(self, ctx: C, routes: Iterable[Route[C]]) -> None:
        self.ctx = ctx
        # Request IDs the client did not send: uuid4 would cost more than the rest of this.
        self._id_prefix = secrets.token_hex(4) + "-"
        self._id_counter = itertools.count(1)
        table: dict[str, dict[str, Guarded]] = {}  # path -> method -> handler
        public: set[str] = set()
        for route in routes:
            methods = table.setdefault(route.path, {})
            methods[route.method] = self._guard(route.handler, route.public)
            if route.method == "GET":
                methods["HEAD"] = methods["GET"]
            if route.public:
                public.add(route.path)
        for path, methods in table.items():  # "*": any other method
            methods["*"] = self._guard(_method_not_allowed(set(methods)), path in public)
        self.routes = table
        self._not_found: Guarded = self._guard(_not_found, public=False)

    def __call__(self, request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        """The route's coroutine, for aiohttp to await (not a coroutine itself: one frame
        less per request)."""
        methods = self.routes.get(request.rel_url.path_safe)
        if methods is None:
            return self._not_found(request)
        return (methods.get(request.method) or methods["*"])(request)

    def server(self, **kwargs: Any) -> web.Server:
        """The low-level server for this router (kwargs go to aiohttp's RequestHandler)."""
        return web.Server(self, access_log=None, **kwargs)

    def _guard(self, handler: Handler[C], public: bool) -> Guarded:
        ctx, prefix, counter = self.ctx, self._id_prefix, self._id_counter
        token = None if public else ctx.token

        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            request_id = (request.headers.get("X-Request-ID", "")[:REQUEST_ID_MAX_CHARS]
                          or prefix + str(next(counter)))
            bound = REQUEST_ID.set(request_id)  # every line logged meanwhile carries request_id=
            try:
                if token is not None and not bearer_matches(request, token):
                    raise Unauthorized
                response = await handler(ctx, request)
            except Exception as e:  # noqa: BLE001 - the one error path; a 500 is logged there
                response = error_response(request, e, request_id)
            finally:
                REQUEST_ID.reset(bound)
            response.headers["X-Request-ID"] = request_id
            return response

        return guarded


def bearer_matches(request: web.BaseRequest, token: bytes) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time. Header bytes that are
    not UTF-8 come back as they were sent (aiohttp decodes with surrogateescape)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8", "surrogateescape"), token)


def _method_not_allowed(allowed: set[str]) -> Handler[ServerContext]:
    async def method_not_allowed(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    return method_not_allowed


async def _not_found(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
    raise web.HTTPNotFound


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def json_bytes_response(body: bytes) -> web.Response:
    """A 200 whose JSON is already serialized."""
    return web.Response(body=body, content_type="application/json")


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The query parameter `name` as an integer `low`-`high` (`default` when absent); any
    other text: InvalidEvent (a 400 naming the parameter)."""
    text = query.get(name)
    if text is None:
        return default
    # ASCII digits only: isdecimal() admits "٣", which int() reads as 3; at most 19 digits
    # (2**63 - 1) so int() never parses a huge number.
    if not (text.isascii() and text.isdecimal() and len(text) <= 19
            and low <= int(text) <= high):
        raise InvalidEvent(name, f"must be an integer {low}-{high}, got {text[:30]!r}")
    return int(text)


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status)


def error_response(request: web.BaseRequest, e: Exception, request_id: str) -> web.Response:
    """The HTTP answer to an exception a handler raised (logged with the request ID)."""
    if isinstance(e, InvalidEvent):
        return error(400, e.message, field=e.field)
    if isinstance(e, Unauthorized):
        return error(401, "missing or wrong bearer token (Authorization: Bearer <TLA_API_TOKEN>)")
    if isinstance(e, StoreUnavailable):
        log.warning("event=store_unavailable path=%s error=%r", request.path, str(e))
        return error(503, "baseline store unavailable: Redis did not answer; retry later")
    if isinstance(e, ConnectionError):  # the client went away mid-body: no one to answer
        log.info("event=client_disconnected path=%s error=%r", request.path, str(e))
        return error(400, "connection lost while reading the request")
    if isinstance(e, web.HTTPException):
        response = error(e.status, e.reason)
        if "Allow" in e.headers:  # 405 must list the methods (RFC 9110)
            response.headers["Allow"] = e.headers["Allow"]
        return response
    log.exception("event=unhandled_error path=%s", request.path, exc_info=e)
    return error(500, "internal error", requestId=request_id)


def arrived_body(request: web.BaseRequest, max_bytes: int) -> bytes | None:
    """The whole body if it has all arrived already, else None (then `read_arriving`).

    A small POST's body comes in the packet of its headers: it is taken from the buffer
    as it is (`request.read()` awaits two reads and copies twice), with no coroutine."""
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()
    if len(body) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, len(body))
    return body


async def read_body(request: web.BaseRequest, max_bytes: int) -> bytes:
    """The request body, at most `max_bytes` (else 413, as aiohttp's `client_max_size`)."""
    body = arrived_body(request, max_bytes)
    return body if body is not None else await read_arriving(request, max_bytes)


async def read_arriving(request: web.BaseRequest, max_bytes: int) -> bytes:
    """`read_body` for a body that has not all arrived: a declared length over the limit
    is refused first, then a client waiting for `100 Continue` gets it, then the body is
    read chunk by chunk as it arrives."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, declared)
    _expect_continue(request)
    content = request.content
    parts: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_bytes, size)
        parts.append(chunk)
    return b"".join(parts)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _expect_continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` before reading a body that has not arrived (curl
    sends it for bodies over 1 KiB and waits a second for it), as aiohttp's router does.

    The interim response goes straight to the transport (documented on the request),
    ahead of the response proper, which the server writes later through its own writer.
    Other expectations are ignored, whenever the body arrives: RFC 9110 lets a server
    answer them with 417 but does not require it, and refusing them only when a body came
    in a second packet would make the answer depend on timing."""
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue" or request.version != HttpVersion11:
        return
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client closed the connection before sending the body")
    transport.write(CONTINUE)


async def healthz(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
    """The process is alive."""
    return json_response({"status": "ok"})


async def readyz(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
    """Redis answers within READY_TIMEOUT_S and no stage is restarting or failed."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):  # not wait_for: see pipeline/retry.py
            redis_ok = await cluster.ping(ctx.redis)
    except (RedisError, OSError, TimeoutError):
        redis_ok = False
    ready = redis_ok and not ctx.health.broken()
    body = {"status": "ready" if ready else "not ready",
            "redis": "ok" if redis_ok else "unavailable", "stages": ctx.health.stages}
    return json_response(body, 200 if ready else 503)


async def metrics_handler(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
    """The registry in Prometheus's text format."""
    payload = generate_latest(ctx.metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


# Every server's probes, the same handlers on the API and on the metrics listener.
PROBES: tuple[Route[ServerContext], ...] = (
    Route("GET", "/healthz", healthz, public=True),
    Route("GET", "/readyz", readyz, public=True),
    Route("GET", "/metrics", metrics_handler),
)


@asynccontextmanager
async def serving(router: Router[Any], host: str, port: int, name: str, fix: str
                  ) -> AsyncIterator[None]:
    """Serve `router` on host:port while the block runs. A port that cannot be bound is a
    ConfigError: "`name` cannot listen on host:port: <why>; `fix`"."""
    runner = web.ServerRunner(router.server(), handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as e:
            raise ConfigError(f"{name} cannot listen on {host}:{port}: {e.strerror}; {fix}") from e
        yield
    finally:
        await runner.cleanup()
