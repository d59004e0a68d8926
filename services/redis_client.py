"""Redis connections from a URL (redis://, rediss://, user:password@, /db), secrets kept out of logs;
a standalone server or a Redis Cluster / Valkey cluster (`TLA_REDIS_MODE`).

TLS and ACL come from the URL alone: `rediss://user:password@host:6380/0` uses TLS and
authenticates as ACL user `user` (AUTH user password). TLS files and checks go in the query
string, as redis-py reads them: `?ssl_ca_certs=/etc/ca.pem&ssl_certfile=...&ssl_keyfile=...`,
`ssl_cert_reqs=none` for a self-signed test server. Only `redact(url)` ever reaches a log.

A cluster is named by any of its nodes, or several comma-separated
(`redis://user:pw@h1:6379,h2:6379,h3:6379`, or whole URLs separated by commas): the
client learns the rest of the topology from the first that answers, follows MOVED and
ASK, and refreshes the slot map when a node fails. `auto` mode asks the first seed's
`INFO cluster`. The cluster client answers the same commands, so it is typed as `Redis`
and the stages take either; what differs on a cluster is in pipeline/cluster.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from pipeline.errors import ConfigError
from pipeline.retry import Backoff, is_transient

log = logging.getLogger(__name__)

# XREADGROUP blocks up to ~1 s; reads must be allowed longer than that.
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
SECRET_QUERY_NAMES = frozenset({"password", "ssl_password"})
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@", re.I)


MODES = ("auto", "standalone", "cluster")
# Commands refused because the slot map moved are retried this many times by the
# cluster client (after refreshing the map): a failover takes a few node timeouts.
CLUSTER_RETRIES = 6
_NEXT_URL = re.compile(r",\s*(?=[a-z][a-z0-9+.-]*://)", re.I)
_URL_PARTS = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://(?:[^@/]*@)?)(?P<hosts>[^/?#]*)(?P<tail>.*)$",
                        re.I)


def seeds(url: str) -> list[str]:
    """The node URLs named by `url`: itself, or one per comma-separated host (or URL).
    Hosts given as `h1:p1,h2:p2` share the first's scheme, user, password and options."""
    if _NEXT_URL.search(url):
        return [u.strip() for u in _NEXT_URL.split(url) if u.strip()]
    m = _URL_PARTS.match(url)
    if m is None or "," not in m["hosts"]:
        return [url]
    return [f"{m['head']}{h.strip()}{m['tail']}" for h in m["hosts"].split(",") if h.strip()]


def connect(url: str, socket_timeout_s: float = SOCKET_TIMEOUT_S, mode: str = "standalone"
            ) -> Redis:
    """A client of the server (`standalone`) or the cluster (`cluster`) that `url` names."""
    nodes = seeds(url)
    if mode == "cluster":
        first = urlsplit(nodes[0])
        if first.scheme == "unix" or (first.path not in ("", "/", "/0")):
            raise ConfigError(f"a Redis Cluster has no unix sockets nor databases other than "
                              f"0: {redact(nodes[0])}")
        startup = [ClusterNode(urlsplit(n).hostname or "127.0.0.1", urlsplit(n).port or 6379)
                   for n in nodes[1:]]
        cluster = RedisCluster.from_url(
            nodes[0], startup_nodes=startup,
            retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), CLUSTER_RETRIES),
            socket_timeout=socket_timeout_s, socket_connect_timeout=CONNECT_TIMEOUT_S)
        return cast(Redis, cluster)
    if mode != "standalone":
        raise ConfigError(f"unknown Redis mode {mode!r}: one of {', '.join(MODES)}")
    if len(nodes) > 1:
        raise ConfigError("several comma-separated Redis nodes name a cluster: set "
                          "TLA_REDIS_MODE=cluster (or auto)")
    return Redis.from_url(url, socket_timeout=socket_timeout_s,
                          socket_connect_timeout=CONNECT_TIMEOUT_S, health_check_interval=30)


async def open_redis(url: str, mode: str = "auto", stop: asyncio.Event | None = None,
                     socket_timeout_s: float = SOCKET_TIMEOUT_S) -> Redis:
    """`connect`, after asking the first node that answers whether it runs a cluster when
    `mode` is `auto`. A server not up yet is waited for, with backoff, until `stop` is set;
    without `stop` (the CLI's tools) the first round of failures is an error."""
    if mode != "auto":
        return connect(url, socket_timeout_s, mode)
    backoff = Backoff()
    while True:
        for node in seeds(url):
            probe = Redis.from_url(node, socket_timeout=CONNECT_TIMEOUT_S,
                                   socket_connect_timeout=CONNECT_TIMEOUT_S)
            try:
                info = await probe.info("cluster")
            except Exception as e:
                if not is_transient(e):
                    raise
                log.warning("event=redis_probe_failed url=%s error=%r action=retry",
                            redact(node), scrub(str(e)))
                continue
            finally:
                await probe.aclose()
            found = "cluster" if int(info.get("cluster_enabled", 0)) else "standalone"
            log.info("event=redis_mode mode=%s url=%s", found, redact(node))
            return connect(url, socket_timeout_s, found)
        if stop is None or stop.is_set():
            raise ConfigError(f"no Redis answered at {redact(url)}; is it running? "
                              "(TLA_REDIS_MODE=standalone or cluster skips this probe)")
        await backoff.wait(stop)


def redact(url: str) -> str:
    """The URL with any password (userinfo or `?password=`) replaced, fit for a log line."""
    if len(nodes := seeds(url)) > 1:
        return ",".join(map(redact, nodes))
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() in SECRET_QUERY_NAMES else v) for k, v in pairs],
                safe="*/",
            )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # unparsable (bad port...): keep the scheme and host shape only
        return scrub(url)


def scrub(text: str) -> str:
    """Replace the password of every `scheme://user:password@` in free text."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
