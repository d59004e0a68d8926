"""The `tempo-anomaly` command: parse, load settings, configure logging, asyncio.run(...)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

from pipeline.errors import TLAError
from services import logs
from services.config import Settings
from services.roles import ROLE_HELP, ROLES

log = logging.getLogger(__name__)

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tempo-anomaly",
        description="Learn per-endpoint, per-hour latency baselines from Tempo traces and "
        "flag anomalous requests, with the numbers behind each verdict.",
    )
    p.add_argument("--config", help="YAML settings file (default: $TLA_CONFIG)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (default: TLA_LOG_LEVEL or INFO)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        """A subcommand whose `--help` says what it does (`description`), as the list does."""
        return sub.add_parser(name, help=text, description=text)

    run = command("run", "every stage + the API in one process")
    run.add_argument("--demo", action="store_true", help="add synthetic demo traffic")
    command("demo", "run + synthetic traffic with history; prints anomalies")
    for name, text in ROLE_HELP.items():
        command(name, text)
    check = command("check", "ask the running API about one request")
    check.add_argument("--service", required=True)
    check.add_argument("--endpoint", required=True)
    check.add_argument("--duration-ms", type=float, required=True)
    check.add_argument("--start-ns", type=int, help="trace start, unix ns (default: now)")
    check.add_argument("--json", action="store_true", help="print the whole verdict as JSON")
    base = command("baseline", "show one bucket's baseline from the running API")
    base.add_argument("--service", required=True)
    base.add_argument("--endpoint", required=True)
    base.add_argument("--hour", type=int, help="0-23 (default: now)")
    base.add_argument("--day-type", choices=("weekday", "weekend"), help="(default: today)")
    base.add_argument("--json", action="store_true")
    ring = command("samples", "show one bucket's stored samples (reads Redis)")
    ring.add_argument("--service", required=True)
    ring.add_argument("--endpoint", required=True)
    ring.add_argument("--hour", type=int, help="0-23 (default: now)")
    ring.add_argument("--day-type", choices=("weekday", "weekend"), help="(default: today)")
    ring.add_argument("--last", type=int, default=20, help="how many of the newest to print")
    ring.add_argument("--json", action="store_true")
    inc = command("incidents", "list incidents from the running API")
    inc.add_argument("--state", choices=("open", "all"), default="all",
                     help="open: only the incidents still open; all: closed ones too "
                     "(default all)")
    inc.add_argument("--since", default="24h",
                     help="closed incidents that ended within: 7d, 36h, 90m, or unix ms "
                     "(default 24h; open ones are always listed)")
    inc.add_argument("--service", help="only this service's incidents (default: every service)")
    inc.add_argument("--limit", type=int, default=100,
                     help="at most this many, newest first: 1-1000 (default 100)")
    inc.add_argument("--json", action="store_true",
                     help="print the API's JSON reply (default: one line per incident)")
    inspect = command("inspect", "streams, groups, lag, pending, dead letters")
    inspect.add_argument("--json", action="store_true")
    backfill = command("backfill", "pull history from Tempo for a cold start")
    backfill.add_argument("--since", default="7d", help="how far back: 7d, 36h, 90m (default 7d)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.load(args.config)
        logs.configure(args.log_level or settings.log.level, settings.log.format)
        return asyncio.run(dispatch(args, settings)) or 0
    except TLAError as e:
        print(f"tempo-anomaly: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def dispatch(args: argparse.Namespace, settings: Settings) -> int | None:
    from services import commands

    handlers: dict[str, Callable[[], Awaitable[int | None]]] = {
        "run": lambda: commands.run(settings, demo=args.demo),
        "demo": lambda: commands.run(settings, demo=True),
        "check": lambda: commands.check(settings, args),
        "baseline": lambda: commands.baseline(settings, args),
        "samples": lambda: commands.samples(settings, args),
        "inspect": lambda: commands.inspect(settings, as_json=args.json),
        "incidents": lambda: commands.incidents(settings, args),
        "backfill": lambda: commands.backfill(settings, args.since),
    }
    if args.command in ROLES:
        return await commands.stage(settings, args.command)
    return await handlers[args.command]()


if __name__ == "__main__":
    sys.exit(main())
