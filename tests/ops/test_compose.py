"""compose/compose.yaml: parsed by a real compose implementation (no daemon needed), and the
stack it describes is the one the docs promise."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.ops.conftest import COMPOSE

COMPOSE_FILE = COMPOSE / "compose.yaml"
ROLES = {"tempo-source": "tempo-source", "otlp": "otlp", "ingest-1": "ingest",
         "ingest-2": "ingest", "recompute": "recompute", "detect": "detect", "api": "api"}
METRICS_PORT = "9464"


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as `docker-compose config` resolves it (anchors, merges, defaults)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("`docker-compose` not installed (Debian: apt-get install -y docker-compose)")
    done = subprocess.run([binary, "-f", str(COMPOSE_FILE), "config"], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_docker_compose_config_accepts_the_file(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) >= {"redis", "tempo", "trace-generator", "otel-collector",
                                          "prometheus", "grafana", *ROLES}


def test_every_role_is_its_own_container_of_the_one_image(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, role in ROLES.items():
        s = services[name]
        assert s["command"] == [role]
        assert s["image"] == "tempo-anomaly:local" and s["build"]["dockerfile"] == "Dockerfile"
        env = s["environment"]
        assert env["TLA_REDIS_URL"] == "redis://redis:6379/0"
        assert env["TLA_METRICS_PORT"] == METRICS_PORT
        assert s["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["tempo-source"]["environment"]["TLA_TEMPO_URL"] == "http://tempo:3200"
    consumers = {services[n]["environment"]["TLA_INGEST_CONSUMER"] for n in ("ingest-1", "ingest-2")}
    assert len(consumers) == 2


def test_redis_persists_with_aof(resolved: dict[str, Any]) -> None:
    redis = resolved["services"]["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    targets = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in redis["volumes"]]
    assert "/data" in targets


def test_tempo_has_local_storage_and_otlp(resolved: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE / "tempo.yaml").read_text())
    assert config["storage"]["trace"]["backend"] == "local"
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    generator = resolved["services"]["trace-generator"]
    assert generator["environment"]["ENDPOINT"] == "otel-collector:4317"


def test_the_collector_fans_traces_out_to_tempo_and_the_receiver() -> None:
    """Read as written (no docker-compose needed): the generator sends to the collector,
    whose one traces pipeline exports to Tempo and to the `otlp` role's port."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    services = raw["services"]
    assert services["trace-generator"]["environment"]["ENDPOINT"] == "otel-collector:4317"
    collector = services["otel-collector"]
    assert "./otel-collector.yaml:/etc/otel-collector.yaml:ro" in collector["volumes"]
    config = yaml.safe_load((COMPOSE / "otel-collector.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    exporters = {name: config["exporters"][name] for name in pipeline["exporters"]}
    assert exporters["otlp/tempo"]["endpoint"] == "tempo:4317"
    receiver = services["otlp"]
    assert receiver["command"] == ["otlp"]
    env = receiver["environment"]
    assert (env["TLA_OTLP_HOST"], env["TLA_OTLP_PORT"]) == ("0.0.0.0", "4318")
    assert exporters["otlphttp/tempo-anomaly"]["endpoint"] == f"http://otlp:{env['TLA_OTLP_PORT']}"


def test_prometheus_scrapes_every_role(resolved: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "tempo-anomaly")
    targets = {t: group["labels"]["role"] for group in job["static_configs"]
               for t in group["targets"]}
    assert targets == {f"{name}:{METRICS_PORT}": role for name, role in ROLES.items()}
    assert config["rule_files"] == ["alerts.yml"]


def test_every_bind_mount_exists() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name} mounts missing {source}"
