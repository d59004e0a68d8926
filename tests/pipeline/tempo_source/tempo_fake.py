"""A Tempo-like HTTP server for tests: /api/search and buildinfo with Tempo's real quirks.

Shapes follow tests/pipeline/tempo_source/fixtures (TEMPO_API.md): uint64 as strings (or numbers, to test
tolerance), omitted zeros, stripped leading zeros in trace IDs, `<root span not yet
received>`, arbitrary subsets over `limit` (newest with `most_recent` from 2.8), spanSet
only before 2.2, `with` rejected before 2.4, limit/spss/range validation as plain-text
400s, tenant (401 `no org id`), basic and bearer auth, the 3.x `end` cut-off, scripted
faults (429 bursts, 5xx, HTML from a proxy), deterministic failure schedules (`every`,
`burst`: which numbered searches fail), slow answers, and full outages.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

SENTINEL = "<root span not yet received>"
MAX_RANGE_S = 168 * 3600


@dataclass
class FakeTrace:
    """One ground-truth trace; `visible_at` / `root_at` are wall times (0 = always)."""

    trace_id: str  # 32 lowercase hex, as the stream must carry it
    service: str
    name: str
    start_ns: int
    root_duration_ns: int
    trace_duration_ns: int  # >= root: async children may end after the root
    visible_at: float = 0.0  # searchable from (ingestion + block flush delay)
    root_at: float = 0.0  # before this the root span is missing: sentinel, no name

    def expected(self, precise: bool = True) -> dict[str, str]:
        """The stream entry the source must publish (root duration, or trace durationMs)."""
        from pipeline.events import format_ms

        duration = self.root_duration_ns / 1e6 if precise else self.trace_duration_ns // 1_000_000
        return {"trace_id": self.trace_id, "service": self.service, "endpoint": self.name,
                "start_ns": str(self.start_ns), "duration_ms": format_ms(duration),
                "source": "tempo"}


@dataclass
class Fault:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"


# Which searches fail: search number (1, 2, ... in arrival order) -> the answer, or None.
Schedule = Callable[[int], Fault | None]

# What Tempo's query-frontend answers when its per-tenant queue is full.
QUEUE_FULL = Fault(429, "too many outstanding requests")


def every(k: int, fault: Fault = QUEUE_FULL) -> Schedule:
    """Searches k, 2k, 3k, ... fail: a fixed share of the load is rejected."""
    return lambda n: fault if n % k == 0 else None


def burst(first: int, count: int, fault: Fault = QUEUE_FULL) -> Schedule:
    """Searches first .. first + count - 1 fail, one after the other."""
    return lambda n: fault if first <= n < first + count else None


def either(*schedules: Schedule) -> Schedule:
    """The first schedule that fails search n decides its answer."""
    return lambda n: next((f for s in schedules if (f := s(n)) is not None), None)


def make_traces(n: int, start_s: float, end_s: float, seed: int = 1, **kw: Any) -> list[FakeTrace]:
    """`n` traces starting uniformly in [start_s, end_s); some IDs have leading zeros."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tid = f"{rng.getrandbits(128):032x}"
        if i % 5 == 0:
            tid = "0" + tid[1:]  # 31 chars once stripped
        if i % 7 == 0:
            tid = "0" * 16 + tid[16:]  # a 64-bit (Jaeger/Zipkin) ID: 16 chars on the wire
        root_ns = rng.randint(200_000, 900_000_000)  # some under 1 ms: durationMs omitted
        out.append(FakeTrace(
            trace_id=tid, service=f"svc-{i % 3}", name=f"GET /items/{{id}}/{i % 4}",
            start_ns=int((start_s + (end_s - start_s) * rng.random()) * 1e9) + rng.randint(0, 999),
            root_duration_ns=root_ns, trace_duration_ns=root_ns + rng.choice([0, 0, 5_000_000]),
            **kw,
        ))
    return out


def _version(text: str | None) -> tuple[int, int]:
    if not text:
        return (3, 0)
    major, minor = text.lstrip("v").split(".")[:2]
    return int(major), int(minor)


class FakeTempo:
    """Serve with `async with FakeTempo(...) as tempo:`; `tempo.url` is the base URL."""

    def __init__(
        self, version: str | None = "3.0.3", *, end_cutoff_s: float | None = None,
        tenant: str | None = None, basic: tuple[str, str] | None = None,
        bearer: str | None = None, max_result_limit: int | None = None,
        numbers: str = "strings", seed: int = 7, hide_buildinfo: bool = False,
    ) -> None:
        self.version = version
        self.v = _version(version)
        default_cutoff_s = 30.0 if self.v >= (3, 0) else 0.0
        self.end_cutoff_s = default_cutoff_s if end_cutoff_s is None else end_cutoff_s
        self.tenant, self.basic, self.bearer = tenant, basic, bearer
        self.max_result_limit = max_result_limit if max_result_limit is not None else (
            262144 if self.v >= (3, 0) else 0)
        self.numbers = numbers  # strings | numbers | mixed
        self.hide_buildinfo = hide_buildinfo
        self.rng = random.Random(seed)
        self.traces: list[FakeTrace] = []
        self.faults: deque[Fault] = deque()
        self.schedule: Schedule | None = None  # consulted after `faults` and `down`
        self.scheduled = 0  # searches numbered for the schedule so far
        self.failed = 0  # searches answered with a scheduled fault
        self.down = False  # 503 from a proxy in front
        self.delay_s = 0.0
        self.searches: list[dict[str, str]] = []  # accepted search params, in order
        self.returned: list[int] = []  # traces in the answer to each of `searches`
        self.requests = 0  # every /api/search hit, rejected or not
        self.auth_headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/search", self.search)
        app.router.add_get("/api/status/buildinfo", self.buildinfo)
        app.router.add_get("/ready", self.ready)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the port: clients get 'connection refused' until start() again."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers --------------------------------------------------------------------

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(text="ready\n")

    async def buildinfo(self, request: web.Request) -> web.Response:
        if self.hide_buildinfo or self.version is None:
            return web.Response(status=404, text="404 page not found\n")
        return web.json_response({"version": self.version, "revision": "ad33aa8f",
                                  "branch": "HEAD", "buildUser": "", "buildDate": "",
                                  "goVersion": "go1.24"})

    def _auth_error(self, request: web.Request) -> web.Response | None:
        h = request.headers
        self.auth_headers.append({k: v for k, v in h.items()
                                  if k in ("X-Scope-OrgID", "Authorization")})
        if self.tenant and h.get("X-Scope-OrgID") != self.tenant:
            return _text(401, "no org id")
        if self.bearer and h.get("Authorization") != f"Bearer {self.bearer}":
            return _text(401, "invalid token")
        if self.basic:
            import base64
            want = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
            if h.get("Authorization") != want:
                return _text(403, "authentication error: invalid credentials")
        return None

    async def search(self, request: web.Request) -> web.Response:
        self.requests += 1
        if (error := self._auth_error(request)) is not None:
            return error
        if self.faults:
            f = self.faults.popleft()
            return web.Response(status=f.status, text=f.body, headers=f.headers,
                                content_type=f.content_type)
        if self.down:
            return _text(503, "Some services are not Running:\nStarting: 1\n")
        if (f := self._scheduled_fault()) is not None:
            return web.Response(status=f.status, text=f.body, headers=f.headers,
                                content_type=f.content_type)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        p = request.query
        if (error := self._validate(p)) is not None:
            return error
        self.searches.append(dict(p))
        answer = self._answer(p)
        self.returned.append(len(answer["traces"]))
        return web.json_response(answer)

    def _scheduled_fault(self) -> Fault | None:
        if self.schedule is None:
            return None
        self.scheduled += 1
        fault = self.schedule(self.scheduled)
        self.failed += fault is not None
        return fault

    def _validate(self, p: Any) -> web.Response | None:
        q = p.get("q", "")
        if q and p.get("tags"):
            return _text(400, "invalid request: can't specify tags and q in the same query")
        if "with" in q and self.v < (2, 4):
            col = q.index("with") + 1
            return _text(400, f"invalid TraceQL query: parse error at line 1, col {col}: "
                              "syntax error: unexpected IDENTIFIER")
        if "nestedSetParent" in q and self.v < (2, 5):
            return _text(400, "invalid TraceQL query: parse error at line 1, col 3: "
                              "syntax error: unexpected IDENTIFIER")
        limit = int(p.get("limit", "20"))
        if limit <= 0:
            return _text(400, "invalid limit: must be a positive number")
        if self.max_result_limit and limit > self.max_result_limit and self.v >= (2, 4):
            return _text(400, f"limit {limit} exceeds max limit {self.max_result_limit}")
        if int(p.get("spss", "3")) > 100:
            return _text(400, f"spans per span set exceeds 100. received {p['spss']}")
        if ("start" in p) != ("end" in p):
            return _text(400, "error parsing date range: only one of start and end provided: "
                              "must provide both or neither")
        if "start" in p:
            start, end = int(p["start"]), int(p["end"])
            if end <= start:
                return _text(400, "http parameter start must be before end. "
                                  f"received start={start} end={end}")
            if end - start > MAX_RANGE_S:
                return _text(400, "range specified by start and end exceeds 168h0m0s. "
                                  f"received start={start} end={end}")
        return None

    def _range(self, p: Any, now: float) -> tuple[float, float]:
        """Where Tempo really looks: 3.x clamps `end` and moves a too-new window to 15 m."""
        if "start" not in p:
            return now - 900, now - self.end_cutoff_s
        start, end = float(p["start"]), float(p["end"])
        if self.end_cutoff_s and end > now - self.end_cutoff_s:
            end = now - self.end_cutoff_s
            if start > end:
                start = now - 900
        return start, end

    def _answer(self, p: Any) -> dict[str, Any]:
        now = time.time()
        start, end = self._range(p, now)
        q = p.get("q", "{}")
        hits = [t for t in self.traces if t.visible_at <= now
                and t.start_ns <= end * 1e9 and t.start_ns + t.trace_duration_ns >= start * 1e9]
        limit = int(p.get("limit", "20"))
        if self.max_result_limit and self.v < (2, 4):
            limit = min(limit, self.max_result_limit)  # silently clamped before 2.4
        if len(hits) > limit:
            if "most_recent=true" in q and self.v >= (2, 8):
                hits = sorted(hits, key=lambda t: t.start_ns, reverse=True)[:limit]
            else:
                hits = self.rng.sample(hits, limit)  # whichever jobs answered first
        hits.sort(key=lambda t: t.start_ns, reverse=True)
        roots = "nestedSetParent" in q
        return {"traces": [self._trace(t, now, roots) for t in hits],
                "metrics": {"inspectedBytes": self._u64(len(hits) * 1234),
                            "completedJobs": 1, "totalJobs": 1}}

    def _u64(self, value: int) -> Any:
        if self.numbers == "numbers" or (self.numbers == "mixed" and self.rng.random() < 0.5):
            return value
        return str(value)

    def _trace(self, t: FakeTrace, now: float, roots: bool) -> dict[str, Any]:
        has_root = now >= t.root_at
        out: dict[str, Any] = {
            "traceID": t.trace_id.lstrip("0") or "0",
            "rootServiceName": t.service if has_root else SENTINEL,
            "startTimeUnixNano": self._u64(t.start_ns),
        }
        if has_root:
            out["rootTraceName"] = t.name
        if t.trace_duration_ns // 1_000_000:
            out["durationMs"] = t.trace_duration_ns // 1_000_000  # uint32: a number; 0 omitted
        spanset = {"spans": [self._span(t, has_root, roots)], "matched": 1}
        if self.v >= (2, 2):
            out["spanSets"] = [spanset]
        if self.v < (3, 0) or self.rng.random() < 0.5:
            out["spanSet"] = spanset  # deprecated but still sent
        out["serviceStats"] = {t.service: {"spanCount": 3}}
        return out

    def _span(self, t: FakeTrace, has_root: bool, roots: bool) -> dict[str, Any]:
        """The root span for a root query; else (or before the root arrived) a child span,
        which an orphan-aware nested set may still mark as a root."""
        child = not (roots and has_root)
        span: dict[str, Any] = {
            "spanID": f"{self.rng.getrandbits(64):016x}",
            "startTimeUnixNano": self._u64(t.start_ns + (1000 if child else 0)),
            "durationNanos": self._u64(t.root_duration_ns // 3 if child else t.root_duration_ns),
            "attributes": [{"key": "service.name", "value": {"stringValue": t.service}}],
        }
        if roots:
            span["attributes"].append({"key": "nestedSetParent", "value": {"intValue": "-1"}})
        if self.rng.random() < 0.5:
            span["name"] = "child" if child else t.name
        return span


def _text(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body)
