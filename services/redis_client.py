"""Redis connections from a URL (redis://, rediss://, user:password@, /db), secrets kept out of logs.

TLS and ACL come from the URL alone: `rediss://user:password@host:6380/0` uses TLS and
authenticates as ACL user `user` (AUTH user password). TLS files and checks go in the query
string, as redis-py reads them: `?ssl_ca_certs=/etc/ca.pem&ssl_certfile=...&ssl_keyfile=...`,
`ssl_cert_reqs=none` for a self-signed test server. Only `redact(url)` ever reaches a log.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis

# XREADGROUP blocks up to ~1 s; reads must be allowed longer than that.
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
SECRET_QUERY_NAMES = frozenset({"password", "ssl_password"})
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@", re.I)


def connect(url: str, socket_timeout_s: float = SOCKET_TIMEOUT_S) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )


def redact(url: str) -> str:
    """The URL with any password (userinfo or `?password=`) replaced, fit for a log line."""
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
