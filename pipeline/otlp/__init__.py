"""OTLP spans → `<p>traces` entries, shared by the OTLP/HTTP receiver and the Kafka source.

`decode` turns an OTLP export (protobuf or OTLP/JSON) into `Span` records, `mapping`
picks the spans that become trace events (the root span, and with `spans: server` every
SERVER span entered from another service) and validates them as ingest would, `publish`
XADDs one batch in one round trip; `settings` and `metrics` are the receiver's and the
shared span counters.
"""

from __future__ import annotations

from pipeline.otlp.decode import Decoded, Span, decode_json, decode_proto
from pipeline.otlp.mapping import Mapped, map_spans
from pipeline.otlp.settings import OtlpSettings

__all__ = ["Decoded", "Mapped", "OtlpSettings", "Span", "decode_json", "decode_proto",
           "map_spans"]
