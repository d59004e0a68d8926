"""The OTLP/HTTP receiver (`POST /v1/traces`): OpenTelemetry exporters and Collectors
send spans, each trace's root span (TLA_OTLP_SPANS) becomes a `<p>traces` entry.

Answers as OTLP/HTTP says (https://opentelemetry.io/docs/specs/otlp/#otlphttp), in the
request's content type (`application/x-protobuf` or `application/json`):

    200  ExportTraceServiceResponse; `partial_success` (rejected span count and a message
         naming each reason) when some spans were dropped
    400  the body is not an OTLP export            google.rpc.Status
    413  the body (after gzip) is over TLA_OTLP_MAX_BODY_BYTES
    415  another content type
    429  Redis is out of memory                    + Retry-After (exporters retry these)
    503  Redis is unreachable or refused the write + Retry-After
    401  the API token (TLA_API_TOKEN) is set and missing: the guard's JSON answer

It runs on the one HTTP layer (services/http.py) with the probes, in the `otlp` role and
in `run` when TLA_OTLP_PORT is set. The events of one request are XADDed in one round
trip, after the whole export is validated: a 503 means nothing needs keeping, a retry
may add some again and ingest's dedup counts them once.

Bodies over ~1 MiB (gzip: ~128 KiB) are inflated and decoded in a thread, so a 16 MiB
export does not stall the API and ingest sharing the event loop under `run`.

gzip: aiohttp's server decodes `Content-Encoding: gzip` bodies before they are read (its
`auto_decompress`), so the body is inflated here only when it still is gzip (its magic
bytes; no protobuf or JSON export starts with them): once, whichever server runs this.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.asyncio import Redis

from pipeline.errors import InvalidEvent, StoreUnavailable
from pipeline.keys import Keys
from pipeline.metrics import Metrics
from pipeline.otlp.decode import Decoded, decode_json, decode_proto
from pipeline.otlp.mapping import Mapped, map_spans
from pipeline.otlp.metrics import SpanMetrics
from pipeline.otlp.publish import StoreFull, publish
from services.config import Settings
from services.health import Health
from services.http import PROBES, Route, Router, ServerContext, read_body, serving

log = logging.getLogger(__name__)

SOURCE = "otlp"  # the `source` field of the entries the receiver publishes
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 16 + zlib.MAX_WBITS
# Bodies decoded in a thread past these sizes (protobuf decodes ~1 MiB in some ms; OTLP
# gzip commonly inflates 5-10 times); smaller ones inline, cheaper than the hand-off.
OFF_LOOP_BYTES = 1 << 20
OFF_LOOP_GZIP_BYTES = OFF_LOOP_BYTES // 8
# google.rpc.Code values of the error answers' Status.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14


class OtlpMetrics:
    """The receiver's requests (`metrics.part(OtlpMetrics)`); spans: SpanMetrics."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "tla_otlp_requests_total", "OTLP/HTTP export requests, by HTTP status",
            ["status"], registry=r,
        )
        self.seconds = Histogram(
            "tla_otlp_request_duration_seconds", "Time to answer one OTLP/HTTP export",
            registry=r,
        )


@dataclass(slots=True, kw_only=True)
class OtlpContext(ServerContext):
    keys: Keys
    spans_mode: str
    retry_after_s: int
    span_metrics: SpanMetrics
    otlp_metrics: OtlpMetrics


class Reply(Exception):
    """An error answer of the export route: HTTP status, google.rpc.Status code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def export_traces(ctx: OtlpContext, request: web.BaseRequest) -> web.Response:
    """`POST /v1/traces`: decode, map, XADD in one round trip, answer as OTLP says."""
    started = time.perf_counter()
    as_json = request.content_type == JSON
    try:
        response = await _export(ctx, request, as_json)
    except Reply as e:
        response = _status_response(e, as_json, ctx.retry_after_s)
    ctx.otlp_metrics.requests.labels(str(response.status)).inc()
    ctx.otlp_metrics.seconds.observe(time.perf_counter() - started)
    return response


async def _export(ctx: OtlpContext, request: web.BaseRequest, as_json: bool) -> web.Response:
    if request.content_type not in (PROTOBUF, JSON):
        raise Reply(415, INVALID_ARGUMENT, f"Content-Type must be {PROTOBUF} or {JSON}, "
                    f"got {request.content_type!r}")
    try:
        body = await read_body(request, ctx.max_body_bytes)
        if off_loop(body):  # up to TLA_OTLP_MAX_BODY_BYTES: keep the API and ingest going
            decoded, mapped = await asyncio.to_thread(_decode, ctx, body, as_json)
        else:  # most exports: a thread's hand-off would cost more than the decoding
            decoded, mapped = _decode(ctx, body, as_json)
    except web.HTTPRequestEntityTooLarge as e:
        raise Reply(413, INVALID_ARGUMENT, f"the body is over {ctx.max_body_bytes} bytes "
                    "(TLA_OTLP_MAX_BODY_BYTES): send smaller batches") from e
    except InvalidEvent as e:
        raise Reply(400, INVALID_ARGUMENT, str(e)) from e
    try:
        await publish(ctx.redis, ctx.keys, mapped.events)
    except StoreFull as e:
        log.warning("event=otlp_store_full error=%r", str(e))
        raise Reply(429, RESOURCE_EXHAUSTED, "Redis is out of memory; retry later") from e
    except StoreUnavailable as e:
        log.warning("event=otlp_store_unavailable error=%r", str(e))
        raise Reply(503, UNAVAILABLE, "Redis did not answer; retry later") from e
    ctx.span_metrics.count(SOURCE, decoded.received, len(mapped.events), mapped.skipped,
                           mapped.rejected)
    return _success(mapped, as_json)


def off_loop(body: bytes) -> bool:
    """Whether decoding `body` takes long enough (some milliseconds) to leave the event
    loop for a thread: over OFF_LOOP_BYTES, or gzip that may inflate past it."""
    limit = OFF_LOOP_GZIP_BYTES if body.startswith(GZIP_MAGIC) else OFF_LOOP_BYTES
    return len(body) > limit


def _decode(ctx: OtlpContext, body: bytes, as_json: bool) -> tuple[Decoded, Mapped]:
    """Inflate, decode and map an export: CPU only, so it may run in a thread."""
    body = inflated(body, ctx.max_body_bytes)
    decoded = (decode_json if as_json else decode_proto)(body, ctx.spans_mode == "root")
    return decoded, map_spans(decoded, ctx.spans_mode, SOURCE)


def inflated(body: bytes, max_bytes: int) -> bytes:
    """`body`, gunzipped if it still is gzip; over `max_bytes` inflated: 413, bad gzip: 400."""
    if not body.startswith(GZIP_MAGIC):
        return body
    inflater = zlib.decompressobj(GZIP_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise InvalidEvent("body", f"is not valid gzip: {e}") from e
    if len(out) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, len(out))
    return out


def _success(mapped: Mapped, as_json: bool) -> web.Response:
    rejected = mapped.rejected_spans
    if as_json:
        doc: dict[str, Any] = {}
        if rejected:  # OTLP: "rejectedSpans" is an int64, a string in OTLP/JSON
            doc["partialSuccess"] = {"rejectedSpans": str(rejected),
                                     "errorMessage": mapped.message()}
        return web.Response(body=orjson.dumps(doc), content_type=JSON)
    message = ExportTraceServiceResponse()
    if rejected:
        message.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=mapped.message()))
    return web.Response(body=message.SerializeToString(), content_type=PROTOBUF)


def _status_response(e: Reply, as_json: bool, retry_after_s: int) -> web.Response:
    if as_json:
        response = web.Response(body=orjson.dumps({"code": e.code, "message": e.message}),
                                status=e.status, content_type=JSON)
    else:
        response = web.Response(body=rpc_status(e.code, e.message), status=e.status,
                                content_type=PROTOBUF)
    if e.status in (429, 503):
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def rpc_status(code: int, message: str) -> bytes:
    """`google.rpc.Status{code, message}` in protobuf (two fields: not worth a dependency)."""
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


ROUTES: tuple[Route[Any], ...] = (Route("POST", "/v1/traces", export_traces), *PROBES)


class OtlpReceiver:
    """The receiver of one process: its router and its stage (`run(stop)`)."""

    def __init__(self, settings: Settings, redis: Redis, metrics: Metrics, health: Health
                 ) -> None:
        o = settings.otlp
        self.host, self.port = o.host, o.listen_port
        token = settings.api.token
        self.ctx = OtlpContext(
            redis=redis, metrics=metrics, health=health,
            token=token.encode() if token else None, max_body_bytes=o.max_body_bytes,
            keys=settings.keys(), spans_mode=o.spans, retry_after_s=o.retry_after_s,
            span_metrics=metrics.part(SpanMetrics), otlp_metrics=metrics.part(OtlpMetrics))
        self.router: Router[OtlpContext] = Router(self.ctx, ROUTES)

    async def run(self, stop: asyncio.Event) -> None:
        async with serving(self.router, self.host, self.port, "the OTLP receiver",
                           "set TLA_OTLP_PORT"):
            log.info("event=otlp_listening url=http://%s:%d/v1/traces", self.host, self.port)
            await stop.wait()
