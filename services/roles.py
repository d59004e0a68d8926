"""The process roles: each stage `tempo-anomaly <role>` runs alone, and `run` together.

A module of its own, without imports: the CLI reads it to build its parser before it
imports the (heavy) runner."""

from __future__ import annotations

# Role → what it does (the CLI's help), in the order `run` starts them.
ROLE_HELP: dict[str, str] = {
    "tempo-source": "poll Tempo and publish trace events",
    "ingest": "consume trace events (scale by running more)",
    "recompute": "recompute dirty baselines every window",
    "detect": "judge event-time intervals per endpoint, open and close incidents",
    "api": "serve the HTTP API",
    "otlp": "receive OTLP/HTTP spans on POST /v1/traces (TLA_OTLP_PORT, default 4318)",
    "kafka-source": "consume OTLP spans from Kafka (TLA_KAFKA_BROKERS, TLA_KAFKA_TOPIC)",
}
ROLES = tuple(ROLE_HELP)
