"""Settings: defaults, YAML, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import env_name
from services import config_docs
from services.config import Settings

EXAMPLE = Path(__file__).parents[2] / "compose" / "tempo-anomaly.example.yaml"


def test_defaults_are_the_seed_defaults() -> None:
    s = Settings.load(env={})
    assert (s.rule.factor, s.rule.k, s.rule_params().min_samples, s.rule.window_size) == (2.0, 10, 50, 1000)
    assert (s.api_cache_ttl_s(), s.tempo.catchup_s) == (5.0, 6 * 3600)
    assert (s.tempo.interval_s, s.tempo.lookback_s, s.recompute.interval_s) == (15, 120, 30)
    assert (s.timezone, s.key_prefix, s.redis.url, s.tempo.url) == ("Asia/Taipei", "tla:", None, None)
    assert (s.api.host, s.api.port, s.api.token) == ("127.0.0.1", 8080, None)


def test_the_example_file_loads_and_equals_the_defaults() -> None:
    assert Settings.load(EXAMPLE, env={}) == Settings.load(env={})


def test_env_overrides_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rule:\n  k: 5\n  factor: 3\napi:\n  port: 9000\ntimezone: UTC\n")
    s = Settings.load(path, env={"TLA_RULE_K": "7", "TLA_REDIS_URL": "redis://x:6379/2",
                                 "TLA_KEY_PREFIX": "prod:", "TLA_TEMPO_VERIFY_TLS": "false"})
    assert (s.rule.k, s.rule.factor, s.api.port, s.timezone) == (7, 3, 9000, "UTC")
    assert (s.redis.url, s.key_prefix, s.tempo.verify_tls) == ("redis://x:6379/2", "prod:", False)
    assert Settings.load(env={"TLA_CONFIG": str(path)}).api.port == 9000


def test_derived_params_follow_the_settings() -> None:
    s = Settings.load(env={"TLA_RULE_WINDOW_SIZE": "200", "TLA_RECOMPUTE_INTERVAL_S": "10"})
    assert s.rule_params().window_size == 200 and s.recompute.claim_idle_ms == 35_000
    assert s.api_url() == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TLA_RULE_K": "ten"}, "TLA_RULE_K must be float"),
        ({"TLA_RULE_MIN_SAMPLES": "0"}, "TLA_RULE_MIN_SAMPLES must be > 0"),
        ({"TLA_TIMEZONE": "Mars/Base"}, "unknown time zone"),
        ({"TLA_KEY_PREFIX": "{x}"}, "hash tag"),
        ({"TLA_API_PORT": "70000"}, "TLA_API_PORT"),
        ({"TLA_REDIS_URL": "localhost:6379"}, "redis://"),
        ({"TLA_TEMPO_URL": "tempo:3200"}, "http://"),
        ({"TLA_TEMPO_USER": "123"}, "TLA_TEMPO_PASSWORD"),
        ({"TLA_LOG_FORMAT": "xml"}, "TLA_LOG_FORMAT"),
        ({"TLA_INGEST_BATCH_SIZE": "5000"}, "2000"),
        ({"TLA_TEMPO_VERIFY_TLS": "maybe"}, "TLA_TEMPO_VERIFY_TLS must be on or off"),
    ],
)
def test_bad_values_say_what_to_fix(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        Settings.load(env=env)


def test_yaml_typos_and_bad_files_are_errors(tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("rule:\n  factr: 3\n")
    with pytest.raises(ConfigError, match="factr"):
        Settings.load(typo, env={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("rule: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Settings.load(broken, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.load(tmp_path / "missing.yaml", env={})


def test_empty_env_value_unsets_an_optional_setting() -> None:
    assert Settings.load(env={"TLA_REDIS_URL": ""}).redis.url is None


# Each pair: (setting changed alone, the default derived from it, a value of the dependent
# setting that conflicts with the change when set explicitly, both variable names).
PAIRS = [
    ({"TLA_RECOMPUTE_INTERVAL_S": "2"}, lambda s: s.api_cache_ttl_s() == 2.0,
     {"TLA_API_CACHE_TTL_S": "3"}, ("TLA_API_CACHE_TTL_S", "TLA_RECOMPUTE_INTERVAL_S")),
    ({"TLA_RECOMPUTE_INTERVAL_S": "2"}, lambda s: s.recompute.claim_idle_ms == 19_000,
     {"TLA_RECOMPUTE_CLAIM_IDLE_S": "2"},
     ("TLA_RECOMPUTE_CLAIM_IDLE_S", "TLA_RECOMPUTE_INTERVAL_S")),
    ({"TLA_RULE_WINDOW_SIZE": "20"}, lambda s: s.rule_params().min_samples == 20,
     {"TLA_RULE_MIN_SAMPLES": "21"}, ("TLA_RULE_MIN_SAMPLES", "TLA_RULE_WINDOW_SIZE")),
    ({"TLA_TEMPO_LOOKBACK_S": "30000"}, lambda s: s.tempo.catchup_s == 30000,
     {"TLA_TEMPO_MAX_CATCHUP_S": "21600"}, ("TLA_TEMPO_MAX_CATCHUP_S", "TLA_TEMPO_LOOKBACK_S")),
]


@pytest.mark.parametrize(("change", "derived", "conflict", "names"), PAIRS)
def test_a_default_follows_the_setting_it_depends_on(change, derived, conflict, names) -> None:
    assert derived(Settings.load(env=change))
    # Through the example file too: its derived keys are null, so they stay derived.
    assert derived(Settings.load(EXAMPLE, env=change))


@pytest.mark.parametrize(("change", "derived", "conflict", "names"), PAIRS)
def test_only_two_explicit_values_conflict_and_both_are_named(change, derived, conflict,
                                                              names) -> None:
    with pytest.raises(ConfigError) as e:
        Settings.load(env={**change, **conflict})
    assert all(name in str(e.value) for name in names)


def test_the_defaults_hold_with_every_setting_changed_alone() -> None:
    """Each numeric setting set alone to the smallest and the largest value its declaration
    allows never trips another setting's default (the trap the pairs above guard)."""
    for section, f, spec in config_docs.settings_fields():
        if f.type not in ("int", "float", "int | None", "float | None"):
            continue
        low = spec.min if spec.min is not None else (spec.above or 0) + 1
        high = spec.max if spec.max is not None else 100_000
        for value in (low, high):
            var = env_name(section, f.name)
            text = str(int(value)) if f.type.startswith("int") else str(value)
            try:
                Settings.load(env={var: text})
            except ConfigError as e:
                # Only a value that conflicts with a setting it bounds may fail, and then
                # the message names the other variable too.
                assert str(e).count("TLA_") >= 2, f"{var}={text}: {e}"


def test_the_api_role_refuses_its_own_port_as_the_metrics_port() -> None:
    from services.runner import Runtime, build_stages

    s = Settings.load(env={"TLA_METRICS_PORT": "8080"})
    rt = Runtime(s, None, "redis://x", None, None, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="TLA_METRICS_PORT and TLA_API_PORT"):
        build_stages(rt, ["api"])
