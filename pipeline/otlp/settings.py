"""`otlp.*` (TLA_OTLP_*): the OTLP/HTTP receiver's settings and the span mapping mode."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import setting

# OTLP/HTTP's registered port (the OpenTelemetry Collector's default for otlphttp).
DEFAULT_PORT = 4318
SPAN_MODES = ("root", "server")


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    host: str = setting("127.0.0.1", "where the OTLP/HTTP receiver listens")
    port: int | None = setting(
        None, "the receiver's port; when set, `run` starts the receiver too", min=1,
        max=65535, unset="4318 for the `otlp` role; `run` starts no receiver")
    spans: str = setting(
        "root", "which spans become trace events: `root` (one per trace) or `server` (also "
        "every SERVER span entered from another service; the Kafka source uses it too)",
        choices=SPAN_MODES)
    max_body_bytes: int = setting(
        16 * 1024 * 1024, "larger export bodies (after gzip decoding) get 413", above=0)
    retry_after_s: int = setting(
        5, "`Retry-After` of the 429/503 answers sent while Redis is unavailable", min=1)

    @property
    def listen_port(self) -> int:
        """`port`, or OTLP/HTTP's default for the `otlp` role."""
        return DEFAULT_PORT if self.port is None else self.port
