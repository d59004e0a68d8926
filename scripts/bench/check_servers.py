"""The HTTP servers the check benchmark loads: the project's API, and a bare aiohttp ceiling.

Run as a child process (pinned with taskset by scripts/bench/check_api.py):
`python -m scripts.bench.check_servers bare|project --port N [...]`; SIGTERM stops it.
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
from services.api import add_routes, create_app
from services.config import Settings
from services.redis_client import connect

CONSTANT_JSON = b'{"isAnomaly":false,"status":"normal","reason":"constant"}'


async def constant(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=CONSTANT_JSON, content_type="application/json")


@web.middleware
async def passthrough(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    return await handler(request)


def bare_app(wrapping: str = "") -> web.Application:
    """The ceiling; behind one no-op middleware ("noop"), or routed and wrapped as the
    project routes and wraps its own handlers ("project": `services.api.add_routes`,
    its per-route guard and 404/405 fallbacks, no middleware)."""
    if wrapping == "project":
        app = web.Application()
        add_routes(app, None, [("POST", "/v1/anomaly/check", constant)])
        return app
    app = web.Application(middlewares=[passthrough] if wrapping == "noop" else [])
    app.router.add_post("/v1/anomaly/check", constant)
    return app


async def serve(kind: str, port: int, redis_url: str, prefix: str, cache_ttl_s: float) -> None:
    redis = None
    if kind.startswith("bare"):
        app = bare_app({"bare": "", "bare-noop": "noop", "bare-mw": "project"}[kind])
    else:
        env = {"TLA_REDIS_URL": redis_url, "TLA_KEY_PREFIX": prefix,
               "TLA_API_CACHE_TTL_S": str(cache_ttl_s)}
        settings = Settings.load(env=env)
        redis = connect(redis_url)
        app = create_app(settings, redis, Metrics())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    if redis is not None:
        await redis.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=("bare", "bare-noop", "bare-mw", "project"))
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
