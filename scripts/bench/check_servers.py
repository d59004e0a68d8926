"""The HTTP servers the check benchmark loads: the project's API, and a bare aiohttp ceiling.

Run as a child process (pinned with taskset by scripts/bench/check_api.py):
`python -m scripts.bench.check_servers KIND --port N [...]` (KIND: see `main`); SIGTERM
stops it.
`--uvloop` runs the server on uvloop's event loop instead of asyncio's (an optional
package, not a dependency of the project: the benchmark compares both loops).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import secrets
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.asyncio import Redis

from pipeline.metrics import Metrics
from services.api import ROUTES, Api
from services.config import Settings
from services.health import Health
from services.http import Route, Router, ServerContext, Unauthorized, bearer_matches, error_response
from services.logs import REQUEST_ID
from services.redis_client import connect

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONSTANT_JSON = b'{"isAnomaly":false,"status":"normal","reason":"constant"}'


async def constant(request: web.BaseRequest) -> web.Response:
    await request.read()
    return web.Response(body=CONSTANT_JSON, content_type="application/json")


async def constant_route(ctx: ServerContext, request: web.BaseRequest) -> web.Response:
    return await constant(request)


@web.middleware
async def passthrough(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


def guard_middleware(token: bytes | None) -> Middleware:
    """The guard of `services.http.Router` as one aiohttp middleware: request ID and log
    context, the bearer token unless the path is public, the same error path. With
    `project_app`, what the API would be on an `Application` (the `project-app` row, the
    measurement behind running the API on the low-level server instead)."""
    prefix = secrets.token_hex(4) + "-"
    counter = itertools.count(1)
    public = {route.path for route in ROUTES if route.public}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = (request.headers.get("X-Request-ID", "")[:64]
                      or prefix + str(next(counter)))
        bound = REQUEST_ID.set(request_id)
        try:
            if (token is not None and request.path not in public
                    and not bearer_matches(request, token)):
                raise Unauthorized
            response = await handler(request)
        except Exception as e:  # noqa: BLE001 - as the router's guard
            response = error_response(request, e, request_id)
        finally:
            REQUEST_ID.reset(bound)
        response.headers["X-Request-ID"] = request_id
        return response

    return guard


def project_app(api: Api) -> web.Application:
    """The API's routes and handlers on an `Application` with the guard as its one
    middleware (the body limit is the API's own, as on the low-level server)."""
    ctx = api.ctx
    app = web.Application(middlewares=[guard_middleware(ctx.token)],
                          client_max_size=ctx.max_body_bytes)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, functools.partial(route.handler, ctx))
    return app


def bare_app(middleware: str | None = None) -> web.Application:
    """The ceiling: an aiohttp `Application` routing to `constant`, optionally behind one
    middleware: "noop" (`passthrough`) or "guard" (`guard_middleware`)."""
    middlewares: dict[str | None, list[Middleware]] = {
        None: [], "noop": [passthrough], "guard": [guard_middleware(None)]}
    app = web.Application(middlewares=middlewares[middleware])
    app.router.add_post("/v1/anomaly/check", constant)
    return app


def bare_runner(kind: str) -> web.BaseRunner:
    """"bare"/"bare-noop"/"bare-app-mw": `bare_app` (no middleware, the no-op one, the
    guard) on an AppRunner. "bare-lowlevel": `constant` alone on aiohttp's low-level
    server (what the project's API runs on). "bare-mw": `constant` routed and guarded as
    the project's routes are (`services.http.Router`: request ID and log context, errors
    to HTTP, 404/405 answers) on the low-level server."""
    if kind == "bare-lowlevel":
        return web.ServerRunner(web.Server(constant, access_log=None), handle_signals=False)
    if kind == "bare-mw":
        ctx = ServerContext(redis=Redis(), metrics=Metrics(), health=Health())  # unused
        router = Router(ctx, [Route("POST", "/v1/anomaly/check", constant_route)])
        return web.ServerRunner(router.server(), handle_signals=False)
    middleware = {"bare-noop": "noop", "bare-app-mw": "guard"}.get(kind)
    return web.AppRunner(bare_app(middleware), access_log=None, handle_signals=False)


async def serve(kind: str, port: int, redis_url: str, prefix: str, cache_ttl_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner: web.BaseRunner
    if kind.startswith("bare"):
        runner = bare_runner(kind)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await stop.wait()
        await runner.cleanup()
        return
    env = {"TLA_REDIS_URL": redis_url, "TLA_KEY_PREFIX": prefix,
           "TLA_API_CACHE_TTL_S": str(cache_ttl_s)}
    redis = connect(redis_url)
    api = Api(Settings.load(env=env), redis, Metrics())
    async with api.running():  # as services.runner serves it
        if kind == "project-app":
            runner = web.AppRunner(project_app(api), access_log=None, handle_signals=False)
        else:
            runner = web.ServerRunner(api.router.server(), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await stop.wait()
        await runner.cleanup()
    await redis.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=("bare", "bare-noop", "bare-app-mw", "bare-lowlevel", "bare-mw",
                                    "project", "project-app"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--prefix", default="bench:check:")
    p.add_argument("--cache-ttl-s", type=float, default=5.0)
    p.add_argument("--uvloop", action="store_true", help="serve on uvloop (pip install uvloop)")
    a = p.parse_args()
    main_coro = serve(a.kind, a.port, a.redis_url, a.prefix, a.cache_ttl_s)
    if a.uvloop:
        import uvloop  # optional: only this benchmark row needs it

        uvloop.run(main_coro)
    else:
        asyncio.run(main_coro)


if __name__ == "__main__":
    main()
