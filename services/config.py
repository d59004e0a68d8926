"""Settings: YAML file + `TLA_*` environment overrides → frozen dataclasses, validated once.

Each stage declares its own section where it lives (`pipeline/ingest/settings.py`,
`pipeline/recompute/settings.py`, `pipeline/tempo_source/settings.py`, `pipeline/rule.py`);
the service-level sections are here. Every setting `section.name` has the variable `TLA_<SECTION>_<NAME>` (`tempo.url` →
`TLA_TEMPO_URL`); top-level ones are `TLA_<NAME>` (`TLA_KEY_PREFIX`, `TLA_TIMEZONE`).
`TLA_CONFIG` names the YAML file. Unknown keys are errors, so typos do not pass silently.
Defaults that depend on another setting are derived from it (None: unset), so only two
values the user set can conflict. docs/configuration.md and the example YAML are
rendered from the declarations (services/config_docs.py).
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
from pipeline.daytypes import Calendar, HolidaySettings
from pipeline.errors import ConfigError
from pipeline.incidents.settings import IncidentSettings
from pipeline.ingest.settings import IngestSettings
from pipeline.kafka_source.settings import KafkaSettings
from pipeline.keys import Keys
from pipeline.otlp.settings import OtlpSettings
from pipeline.recompute.settings import RecomputeSettings
from pipeline.rule import RuleParams, RuleSettings
from pipeline.settings import check_bounds, env_name, setting
from pipeline.tempo_source.settings import TempoSettings
from services.web.settings import UiSettings

__all__ = ["ConfigError", "Settings", "env_name"]

CACHE_TTL_DEFAULT_S = 5.0  # capped at recompute.interval_s: no staler than one window


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str | None = setting(
        None, "`redis://[user:password@]host:port/db`, `rediss://...` (TLS), `unix://`; a "
        "cluster: any node, or several comma-separated (`redis://h1:6379,h2:6379`)",
        unset="embedded server (`run`, `demo` only)")
    mode: str = setting(
        "auto", "`auto` asks the server (`INFO cluster`); the others force it",
        choices=("auto", "standalone", "cluster"))


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = setting("127.0.0.1", "where the API listens")
    port: int = setting(8080, "the API's port", min=1, max=65535)
    token: str | None = setting(
        None, "bearer token required on every route but `/healthz`, `/readyz` and the web "
        "view's pages (they hold no data; the JSON behind them needs it); the OTLP "
        "receiver's `/v1/traces` requires it too", unset="no auth")
    max_body_bytes: int = setting(1024 * 1024, "larger request bodies get 413", above=0)
    cache_ttl_s: float | None = setting(
        None, "in-process baseline cache lifetime", min=0,
        unset="derived: 5, or the recompute window if shorter")
    url: str | None = setting(
        None, "where `check`, `baseline` and `incidents` find the API", unset="`http://<host>:<port>`")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    port: int = setting(
        0, "port of a `/metrics` `/healthz` `/readyz` listener, in any role (0: off; the api "
        "role serves them on its own port too; the image sets 9464, the port registered for "
        "Prometheus exporters of this kind)",
        min=0, max=65535)
    host: str = setting("127.0.0.1", "where that listener binds")
    observe_interval_s: float = setting(
        15.0, "how often the api process reads stream lag, pending and baseline age (0: off)",
        min=0)


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = setting("INFO", "log level: DEBUG, INFO, WARNING or ERROR")
    format: str = setting("kv", "`kv` (key=value lines) or `json` (one object per line)",
                          choices=("kv", "json"))


@dataclass(frozen=True, slots=True)
class Settings:
    key_prefix: str = setting("tla:", "prefix of every key and stream (no `{` or `}`)")
    timezone: str = setting("Asia/Taipei", "IANA zone of the hour-of-day buckets")
    state_dir: str = setting(".tla-state", "the embedded store's data folder")
    redis: RedisSettings = field(default_factory=RedisSettings)
    rule: RuleSettings = field(default_factory=RuleSettings)
    holidays: HolidaySettings = field(default_factory=HolidaySettings)
    tempo: TempoSettings = field(default_factory=TempoSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    recompute: RecomputeSettings = field(default_factory=RecomputeSettings)
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    otlp: OtlpSettings = field(default_factory=OtlpSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    ui: UiSettings = field(default_factory=UiSettings)

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Defaults ← YAML file (`path` or $TLA_CONFIG) ← TLA_* variables; then validate."""
        env = os.environ if env is None else env
        path = path or env.get("TLA_CONFIG") or None
        data = _read_yaml(Path(path)) if path else {}
        settings = _build(cls, data, env, section=None)
        assert isinstance(settings, Settings)
        validate(settings)
        return settings

    def replace(self, **sections: Any) -> Settings:
        return dataclasses.replace(self, **sections)

    # Values derived from more than one section, computed here and nowhere else.
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    def rule_params(self) -> RuleParams:
        return self.rule.params()

    def calendar(self) -> Calendar:
        """The dates whose buckets are `weekend` besides Saturdays and Sundays."""
        return self.holidays.calendar()

    def incidents_lateness_s(self) -> int:
        """`incidents.lateness_s`, or its default derived from `tempo.lookback_s`."""
        return self.incidents.lateness(self.tempo.lookback_s)

    def api_cache_ttl_s(self) -> float:
        """`api.cache_ttl_s`, or its default derived from `recompute.interval_s`."""
        ttl = self.api.cache_ttl_s
        return ttl if ttl is not None else min(CACHE_TTL_DEFAULT_S, self.recompute.interval_s)

    def api_url(self) -> str:
        host = "127.0.0.1" if self.api.host in ("0.0.0.0", "::", "") else self.api.host
        return self.api.url or f"http://{host}:{self.api.port}"


def sections() -> list[tuple[str | None, type]]:
    """(section name, dataclass) of every settings section; None: the top level."""
    out: list[tuple[str | None, type]] = [(None, Settings)]
    hints = get_type_hints(Settings)
    out += [(f.name, hints[f.name]) for f in dataclasses.fields(Settings)
            if dataclasses.is_dataclass(hints[f.name])]
    return out


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
    if get_origin(base) is tuple:
        return _to_tuple(value, label)
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
    kind = "on or off" if base is bool else base.__name__
    raise ConfigError(f"{label} must be {kind}, got {value!r}")


def _to_tuple(value: Any, label: str) -> tuple[str, ...]:
    """A list setting: a YAML list (dates stay as written), or comma-separated text."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value)
    raise ConfigError(f"{label} must be a list, got {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def validate(s: Settings) -> None:
    """Bounds as each setting declares them, then what one declaration cannot say."""
    for name, _ in sections():
        check_bounds(name, getattr(s, name) if name else s)
    load_zone(s.timezone)
    s.calendar()  # a country the holidays package knows, dates that parse
    Keys(s.key_prefix)
    _check_pairs(s)
    s.ui.validate()
    if s.redis.url and not s.redis.url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("TLA_REDIS_URL must start with redis://, rediss:// or unix://")
    if s.redis.url and s.redis.mode == "cluster" and s.redis.url.startswith("unix://"):
        raise ConfigError("TLA_REDIS_MODE=cluster needs redis:// or rediss:// node addresses")
    if s.tempo.url and not s.tempo.url.startswith(("http://", "https://")):
        raise ConfigError("TLA_TEMPO_URL must start with http:// or https://")
    if (s.tempo.user is None) != (s.tempo.password is None):
        raise ConfigError("set both TLA_TEMPO_USER and TLA_TEMPO_PASSWORD for basic auth")
    _check_kafka(s)


def _check_kafka(s: Settings) -> None:
    k = s.kafka
    if k.security_protocol.startswith("SASL") and (k.sasl_user is None or k.sasl_password is None):
        raise ConfigError(f"TLA_KAFKA_SECURITY_PROTOCOL={k.security_protocol} needs "
                          "TLA_KAFKA_SASL_USER and TLA_KAFKA_SASL_PASSWORD")
    if (k.cert_file is None) != (k.key_file is None):
        raise ConfigError("set both TLA_KAFKA_CERT_FILE and TLA_KAFKA_KEY_FILE for mutual TLS")
    if k.heartbeat_interval_s >= k.session_timeout_s:
        raise ConfigError(
            f"TLA_KAFKA_HEARTBEAT_INTERVAL_S ({k.heartbeat_interval_s:g}) must be below "
            f"TLA_KAFKA_SESSION_TIMEOUT_S ({k.session_timeout_s:g}): the group would drop "
            "live workers")


def _check_pairs(s: Settings) -> None:
    """Settings that bound each other. A derived default always fits the setting it is
    derived from, so only a value the user set can fail here; the message names both."""
    r, t, w = s.rule, s.tempo, s.recompute.interval_s
    if r.min_samples is not None and r.min_samples > r.window_size:
        raise ConfigError(
            f"TLA_RULE_MIN_SAMPLES ({r.min_samples}) must not exceed TLA_RULE_WINDOW_SIZE "
            f"({r.window_size}): a bucket keeps only that many samples, so it would never judge"
        )
    if t.max_catchup_s is not None and t.max_catchup_s < t.lookback_s:
        raise ConfigError(
            f"TLA_TEMPO_MAX_CATCHUP_S ({t.max_catchup_s}) must be >= TLA_TEMPO_LOOKBACK_S "
            f"({t.lookback_s}): every poll looks back that far"
        )
    if s.api.cache_ttl_s is not None and s.api.cache_ttl_s > w:
        raise ConfigError(
            f"TLA_API_CACHE_TTL_S ({s.api.cache_ttl_s:g}) must not exceed "
            f"TLA_RECOMPUTE_INTERVAL_S ({w}): a cached baseline would outlive its window"
        )
    if s.recompute.claim_idle_s is not None and s.recompute.claim_idle_s <= w:
        raise ConfigError(
            f"TLA_RECOMPUTE_CLAIM_IDLE_S ({s.recompute.claim_idle_s:g}) must exceed "
            f"TLA_RECOMPUTE_INTERVAL_S ({w}): a live agent holds the open window's marks that long"
        )
