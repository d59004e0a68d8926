"""What every benchmark shares: arguments, a private key prefix and its cleanup, tables, JSON.

Benchmarks run against the machine's Redis (127.0.0.1:6379 unless `--redis-url`) under a
prefix nobody else uses, and delete every key under it when they finish. Figures are only
comparable within one run: each benchmark measures the project and its ceiling side by
side and reports the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SCAN_COUNT = 1000


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: finishes in seconds")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    p.add_argument("--prefix", default=None, help="key prefix (default: unique per run)")
    return p


def unique_prefix(name: str) -> str:
    return f"bench:{name}:{uuid.uuid4().hex[:8]}:"


async def delete_prefix(redis: Redis, prefix: str) -> int:
    """UNLINK every key under `prefix` (SCAN, never KEYS: the server may be shared)."""
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            deleted += await redis.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def redis_info(redis: Redis) -> dict[str, Any]:
    info = await redis.info("server")
    return {"redis_version": info.get("redis_version"), "redis_pid": info.get("process_id")}


def taskset(cpus: str | None) -> list[str]:
    """A command prefix pinning a child to `cpus` (e.g. "0"), when taskset exists."""
    if cpus is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", cpus]


def spawn(module: str, args: Sequence[str], cpus: str | None = None,
          env: dict[str, str] | None = None, profile_to: str | None = None,
          ) -> subprocess.Popen[bytes]:
    """Start `python -m scripts.bench.<module> ...` from the repository root; with
    `profile_to`, under cProfile writing its stats there."""
    profile = ["-m", "cProfile", "-o", profile_to] if profile_to else []
    cmd = [*taskset(cpus), sys.executable, *profile, "-m", f"scripts.bench.{module}", *args]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, **(env or {})})


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in
                      enumerate(zip(r, widths))) for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_json(path: str | None, name: str, figures: dict[str, Any], extra: dict[str, Any]) -> None:
    if not path:
        return
    doc = {"benchmark": name, "at_unix_s": int(time.time()), "machine": machine(), **extra,
           "figures": figures}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def ratio(value: float, ceiling: float) -> float:
    return round(value / ceiling, 3) if ceiling else 0.0
