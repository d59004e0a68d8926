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
import hmac
import itertools
import secrets
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from pipeline.metrics import Metrics
from services import api as api_module
from services.api import Api, Dispatch
from services.config import Settings
from services.logs import REQUEST_ID
from services.redis_client import connect

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONSTANT_JSON = b'{"isAnomaly":false,"status":"normal","reason":"constant"}'


async def constant(request: web.BaseRequest) -> web.Response:
    await request.read()
    return web.Response(body=CONSTANT_JSON, content_type="application/json")


async def constant_route(ctx: object, request: web.BaseRequest) -> web.Response:
    return await constant(request)


@web.middleware
async def passthrough(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


def guard_middleware(token: bytes | None) -> Middleware:
    """The project's route guard as one aiohttp middleware: request ID and log context,
    the bearer token unless the path is public, errors to HTTP by the API's own mapping.
    With `project_app`, what the API would be on an `Application` (the benchmark's
    `project-app` row); the API itself does not run on it."""
    prefix = secrets.token_hex(4) + "-"
    counter = itertools.count(1)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = (request.headers.get("X-Request-ID", "")[:64]
                      or prefix + str(next(counter)))
        bound = REQUEST_ID.set(request_id)
        try:
            if token is not None and request.path not in api_module.PUBLIC_PATHS:
                scheme, _, value = request.headers.get("Authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(
                        value.strip().encode(), token):
                    raise api_module.Unauthorized
            response = await handler(request)
        except Exception as e:  # noqa: BLE001 - as the API's guard
            response = api_module._error_response(request, e, request_id)
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
    for method, path, handler in api_module.ROUTES:
        app.router.add_route(method, path, functools.partial(handler, ctx))
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
    server (what the project's API runs on). "bare-mw": `constant` dispatched and guarded as the project's routes are (`services.api.Dispatch`: request
    ID and log context, errors to HTTP, 404/405 answers) on the low-level server."""
    if kind == "bare-lowlevel":
        return web.ServerRunner(web.Server(constant, access_log=None), handle_signals=False)
    if kind == "bare-mw":
        dispatch = Dispatch(None, None, [("POST", "/v1/anomaly/check", constant_route)])
        return web.ServerRunner(web.Server(dispatch, access_log=None), handle_signals=False)
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
            runner = web.ServerRunner(api.server(), handle_signals=False)
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
