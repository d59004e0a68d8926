"""Settings: YAML file + `TLA_*` environment overrides → frozen dataclasses, validated once.

Every setting `section.name` has the variable `TLA_<SECTION>_<NAME>` (`tempo.url` →
`TLA_TEMPO_URL`); top-level ones are `TLA_<NAME>` (`TLA_KEY_PREFIX`, `TLA_TIMEZONE`).
`TLA_CONFIG` names the YAML file. Unknown keys are errors, so typos do not pass silently.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, cast, get_args, get_origin, get_type_hints

import yaml

from pipeline.buckets import load_zone
from pipeline.errors import ConfigError
from pipeline.ingest import IngestParams
from pipeline.keys import Keys
from pipeline.recompute import RecomputeParams
from pipeline.rule import RuleParams

ENV_PREFIX = "TLA_"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str | None = None  # unset: `run`/`demo` start an embedded server


@dataclass(frozen=True, slots=True)
class RuleSettings:
    factor: float = 2.0
    k: float = 10.0
    min_samples: int = 50
    window_size: int = 1000
    floor_ms: float = 1.0


@dataclass(frozen=True, slots=True)
class TempoSettings:
    url: str | None = None  # unset: no Tempo polling
    interval_s: float = 15.0
    lookback_s: int = 120
    query: str = "{ nestedSetParent < 0 }"
    limit: int = 500
    spss: int = 1
    tenant: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    timeout_s: float = 10.0
    verify_tls: bool = True
    ca_file: str | None = None
    max_catchup_s: int = 6 * 3600
    # Bisecting a truncated search stops at this window (seconds).
    min_window_s: int = 1
    # Single-poller lease: a standby takes over within about this long after the leader dies.
    lease_ttl_s: float = 10.0
    # Newest seconds Tempo hides (3.x `query_end_cutoff`); unset: 30 on 3.x, 0 on 2.x.
    end_cutoff_s: float | None = None
    # A search Tempo cannot answer (429, 5xx, timeout) is retried in place this long before
    # the poll cycle ends; the next cycle resumes after the last recorded part. 0: no retry.
    search_retry_s: float = 60.0


@dataclass(frozen=True, slots=True)
class IngestSettings:
    batch_size: int = 500
    block_ms: int = 1000
    dedup_ttl_s: int = 900
    bucket_ttl_s: int = 14 * 86400
    claim_idle_s: float = 60.0
    max_deliveries: int = 5
    consumer: str | None = None  # default: <hostname>-<pid>
    # Endpoints one service may track (0: no cap); past it new endpoints are dead-lettered.
    max_endpoints_per_service: int = 2000
    # Services tracked (0: no cap); past it new services are dead-lettered.
    max_services: int = 1000
    # A consumer group this many entries behind (undelivered + pending) is logged loudly.
    lag_alert_entries: int = 100_000


@dataclass(frozen=True, slots=True)
class RecomputeSettings:
    interval_s: int = 30
    # Marks a dead agent left pending are taken over after this long; unset: 2 windows + 15 s
    # (a live agent holds the open window's marks up to one window).
    claim_idle_s: float | None = None


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_body_bytes: int = 1024 * 1024
    cache_ttl_s: float = 5.0
    url: str | None = None  # where `check`/`baseline` find the API; default from host/port


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    # 0: no listener. Roles other than `api` expose /metrics and /healthz here (the image
    # sets 9464, the port registered for Prometheus exporters of this kind).
    port: int = 0
    host: str = "127.0.0.1"
    # How often the api process reads XINFO/XPENDING/XLEN into gauges; 0 turns it off.
    observe_interval_s: float = 15.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "INFO"
    format: str = "kv"  # kv | json


@dataclass(frozen=True, slots=True)
class Settings:
    key_prefix: str = "tla:"
    timezone: str = "Asia/Taipei"
    state_dir: str = ".tla-state"
    redis: RedisSettings = field(default_factory=RedisSettings)
    rule: RuleSettings = field(default_factory=RuleSettings)
    tempo: TempoSettings = field(default_factory=TempoSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    recompute: RecomputeSettings = field(default_factory=RecomputeSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Defaults ← YAML file (`path` or $TLA_CONFIG) ← TLA_* variables; then validate."""
        env = os.environ if env is None else env
        path = path or env.get("TLA_CONFIG") or None
        data = _read_yaml(Path(path)) if path else {}
        settings = _build(cls, data, env, section=None)
        validate(settings)
        return settings

    def replace(self, **sections: Any) -> Settings:
        return dataclasses.replace(self, **sections)

    # The pipeline's own parameter objects, derived in one place.
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    def rule_params(self) -> RuleParams:
        r = self.rule
        return RuleParams(r.factor, r.k, r.min_samples, r.floor_ms)

    def ingest_params(self) -> IngestParams:
        i = self.ingest
        return IngestParams(
            batch_size=i.batch_size, block_ms=i.block_ms, seen_ttl_s=i.dedup_ttl_s,
            bucket_ttl_s=i.bucket_ttl_s, window_size=self.rule.window_size,
            window_s=self.recompute.interval_s, claim_idle_ms=int(i.claim_idle_s * 1000),
            max_deliveries=i.max_deliveries,
            # Look for orphans about twice per idle period, at least every 10 s.
            claim_every_s=min(10.0, max(0.5, i.claim_idle_s / 2)),
            max_endpoints_per_service=i.max_endpoints_per_service,
            max_services=i.max_services,
            lag_alert_entries=i.lag_alert_entries,
        )

    def recompute_params(self) -> RecomputeParams:
        w = self.recompute.interval_s
        idle_s = self.recompute.claim_idle_s
        idle_ms = int(idle_s * 1000) if idle_s is not None else (2 * w + 15) * 1000
        return RecomputeParams(window_s=w, bucket_ttl_s=self.ingest.bucket_ttl_s,
                               claim_idle_ms=idle_ms)

    def api_url(self) -> str:
        host = "127.0.0.1" if self.api.host in ("0.0.0.0", "::", "") else self.api.host
        return self.api.url or f"http://{host}:{self.api.port}"


def env_name(section: str | None, name: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}" if section else f"{ENV_PREFIX}{name.upper()}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _build(cls: type, data: Mapping[str, Any], env: Mapping[str, str], section: str | None) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    where = f"section {section!r}" if section else "the top level"
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown} in {where}; known: {sorted(names)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            sub = data.get(f.name) or {}
            if not isinstance(sub, dict):
                raise ConfigError(f"{f.name} must be a mapping of settings")
            values[f.name] = _build(cast(type, hint), sub, env, f.name)
            continue
        label = f"{section}.{f.name}" if section else f.name
        var = env_name(section, f.name)
        if var in env:
            values[f.name] = _coerce(env[var], hint, var, from_env=True)
        elif f.name in data:
            values[f.name] = _coerce(data[f.name], hint, label, from_env=False)
    return cls(**values)


def _coerce(value: Any, hint: Any, label: str, from_env: bool) -> Any:
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    base = next(a for a in get_args(hint) if a is not type(None)) if optional else hint
    if value is None or (from_env and value == "" and optional):
        if optional:
            return None
        raise ConfigError(f"{label} must not be empty")
    try:
        if base is bool:
            return _to_bool(value)
        if base is int and not isinstance(value, bool):
            return int(value)
        if base is float and not isinstance(value, bool):
            return float(value)
        if base is str:
            return str(value)
    except ValueError:
        pass
    raise ConfigError(f"{label} must be {base.__name__}, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _positive(label: str, value: float, strict: bool = True) -> None:
    if value < 0 or (strict and value == 0):
        raise ConfigError(f"{label} must be {'>' if strict else '>='} 0, got {value}")


def validate(s: Settings) -> None:
    """Range checks with messages that say which variable to fix."""
    load_zone(s.timezone)
    Keys(s.key_prefix)
    for label, value in (
        ("TLA_RULE_FACTOR", s.rule.factor), ("TLA_RULE_MIN_SAMPLES", s.rule.min_samples),
        ("TLA_RULE_WINDOW_SIZE", s.rule.window_size), ("TLA_TEMPO_INTERVAL_S", s.tempo.interval_s),
        ("TLA_TEMPO_LOOKBACK_S", s.tempo.lookback_s), ("TLA_TEMPO_LIMIT", s.tempo.limit),
        ("TLA_TEMPO_TIMEOUT_S", s.tempo.timeout_s), ("TLA_INGEST_BATCH_SIZE", s.ingest.batch_size),
        ("TLA_INGEST_DEDUP_TTL_S", s.ingest.dedup_ttl_s),
        ("TLA_INGEST_BUCKET_TTL_S", s.ingest.bucket_ttl_s),
        ("TLA_INGEST_MAX_DELIVERIES", s.ingest.max_deliveries),
        ("TLA_INGEST_CLAIM_IDLE_S", s.ingest.claim_idle_s),
        ("TLA_INGEST_LAG_ALERT_ENTRIES", s.ingest.lag_alert_entries),
        ("TLA_RECOMPUTE_INTERVAL_S", s.recompute.interval_s),
        ("TLA_API_MAX_BODY_BYTES", s.api.max_body_bytes),
    ):
        _positive(label, value)
    _positive("TLA_INGEST_MAX_ENDPOINTS_PER_SERVICE", s.ingest.max_endpoints_per_service,
              strict=False)
    _positive("TLA_INGEST_MAX_SERVICES", s.ingest.max_services, strict=False)
    if s.recompute.claim_idle_s is not None and s.recompute.claim_idle_s <= s.recompute.interval_s:
        raise ConfigError(
            "TLA_RECOMPUTE_CLAIM_IDLE_S must exceed TLA_RECOMPUTE_INTERVAL_S: a live agent "
            "holds the open window's marks that long"
        )
    for label, value in (("TLA_RULE_K", s.rule.k), ("TLA_RULE_FLOOR_MS", s.rule.floor_ms),
                         ("TLA_API_CACHE_TTL_S", s.api.cache_ttl_s)):
        _positive(label, value, strict=False)
    if s.rule.window_size > 100_000:
        raise ConfigError("TLA_RULE_WINDOW_SIZE above 100000 makes every recompute slow")
    if s.ingest.batch_size > 2000:
        raise ConfigError("TLA_INGEST_BATCH_SIZE must be <= 2000 (one Lua call holds the batch)")
    if not 0 < s.api.port < 65536:
        raise ConfigError(f"TLA_API_PORT must be 1-65535, got {s.api.port}")
    if not 0 <= s.metrics.port < 65536:
        raise ConfigError(f"TLA_METRICS_PORT must be 0 (off) or 1-65535, got {s.metrics.port}")
    _positive("TLA_METRICS_OBSERVE_INTERVAL_S", s.metrics.observe_interval_s, strict=False)
    if s.api.cache_ttl_s > s.recompute.interval_s:
        raise ConfigError("TLA_API_CACHE_TTL_S must not exceed TLA_RECOMPUTE_INTERVAL_S")
    if s.log.format not in ("kv", "json"):
        raise ConfigError(f"TLA_LOG_FORMAT must be 'kv' or 'json', got {s.log.format!r}")
    if s.redis.url and not s.redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("TLA_REDIS_URL must start with redis://, rediss:// or unix://")
    if s.tempo.url and not s.tempo.url.startswith(("http://", "https://")):
        raise ConfigError("TLA_TEMPO_URL must start with http:// or https://")
    if (s.tempo.user is None) != (s.tempo.password is None):
        raise ConfigError("set both TLA_TEMPO_USER and TLA_TEMPO_PASSWORD for basic auth")
