"""`kafka.*` (TLA_KAFKA_*): the Kafka source's settings, each declared once."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import setting

ENCODINGS = ("otlp_proto", "otlp_json")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    brokers: str | None = setting(
        None, "bootstrap brokers, comma-separated `host:port`", unset="no Kafka source")
    topic: str = setting("otlp_spans", "the topic the Collector's `kafka` exporter writes")
    encoding: str = setting(
        "otlp_proto", "how its messages are encoded (the exporter's `encoding`)",
        choices=ENCODINGS)
    group: str = setting(
        "tempo-anomaly", "consumer group (the faust app id): workers of one group share "
        "the topic's partitions")
    batch_size: int = setting(
        500, "messages XADDed together, in one round trip", min=1)
    batch_wait_s: float = setting(
        0.5, "longest a partial batch waits for more messages", above=0)
    security_protocol: str = setting(
        "PLAINTEXT", "how to reach the brokers: TLS (`SSL`), SASL, both, or neither",
        choices=SECURITY_PROTOCOLS)
    sasl_mechanism: str = setting(
        "PLAIN", "SASL mechanism (with a `SASL_` security protocol)",
        choices=SASL_MECHANISMS)
    sasl_user: str | None = setting(None, "SASL user name", unset="none")
    sasl_password: str | None = setting(None, "SASL password", unset="none")
    ca_file: str | None = setting(None, "CA bundle for TLS", unset="the system's")
    cert_file: str | None = setting(None, "client certificate (mutual TLS)", unset="none")
    key_file: str | None = setting(None, "the client certificate's key", unset="none")
    session_timeout_s: float = setting(
        60.0, "a worker silent this long leaves the group; its partitions move", above=0)
    heartbeat_interval_s: float = setting(
        3.0, "how often a worker tells the group it is alive (under a third of the "
        "session timeout)", above=0)
    rebalance_timeout_s: float = setting(
        60.0, "how long a rebalance waits for every worker to rejoin", above=0)
