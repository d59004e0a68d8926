"""The HTTP servers the check benchmark loads: the project's API, and a bare aiohttp ceiling.

Run as a child process (pinned with taskset by scripts/bench/check_api.py):
`python -m scripts.bench.check_servers bare|bare-noop|bare-lowlevel|bare-mw|project --port N
[...]`; SIGTERM stops it.
`--uvloop` runs the server on uvloop's event loop instead of asyncio's (an optional
package, not a dependency of the project: the benchmark compares both loops).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from pipeline.metrics import Metrics
from services.api import Api, Dispatch
from services.config import Settings
from services.redis_client import connect

CONSTANT_JSON = b'{"isAnomaly":false,"status":"normal","reason":"constant"}'


async def constant(request: web.BaseRequest) -> web.Response:
    await request.read()
    return web.Response(body=CONSTANT_JSON, content_type="application/json")


async def constant_route(ctx: object, request: web.BaseRequest) -> web.Response:
    return await constant(request)


@web.middleware
async def passthrough(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    return await handler(request)


def bare_app(noop_middleware: bool = False) -> web.Application:
    """The ceiling: an aiohttp `Application` routing to `constant`, optionally behind one
    no-op middleware."""
    app = web.Application(middlewares=[passthrough] if noop_middleware else [])
    app.router.add_post("/v1/anomaly/check", constant)
    return app


def bare_runner(kind: str) -> web.BaseRunner:
    """"bare"/"bare-noop": `bare_app` on an AppRunner. "bare-lowlevel": `constant` alone
    on aiohttp's low-level server (what the project's API runs on). "bare-mw": `constant`
    dispatched and guarded as the project's routes are (`services.api.Dispatch`: request
    ID and log context, errors to HTTP, 404/405 answers) on the low-level server."""
    if kind == "bare-lowlevel":
        return web.ServerRunner(web.Server(constant, access_log=None), handle_signals=False)
    if kind == "bare-mw":
        dispatch = Dispatch(None, None, [("POST", "/v1/anomaly/check", constant_route)])
        return web.ServerRunner(web.Server(dispatch, access_log=None), handle_signals=False)
    return web.AppRunner(bare_app(kind == "bare-noop"), access_log=None, handle_signals=False)


async def serve(kind: str, port: int, redis_url: str, prefix: str, cache_ttl_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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
        runner = web.ServerRunner(api.server(), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await stop.wait()
        await runner.cleanup()
    await redis.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=("bare", "bare-noop", "bare-lowlevel", "bare-mw", "project"))
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
