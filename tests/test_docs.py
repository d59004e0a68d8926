"""Docs that must match the code: every setting is in the README table and the example file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from services.config import Settings, env_name

ROOT = Path(__file__).parents[1]


def all_settings() -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for f in dataclasses.fields(Settings):
        value = getattr(Settings(), f.name)
        if dataclasses.is_dataclass(value):
            out += [(f.name, g.name) for g in dataclasses.fields(value)]
        else:
            out.append((None, f.name))
    return out


def test_readme_lists_every_environment_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [env_name(s, n) for s, n in all_settings() if f"`{env_name(s, n)}`" not in readme]
    assert not missing, f"add to README's configuration table: {missing}"


def test_example_file_lists_every_key() -> None:
    example = yaml.safe_load((ROOT / "compose" / "tempo-anomaly.example.yaml").read_text())
    missing = [f"{s}.{n}" if s else n for s, n in all_settings()
               if (n not in example.get(s, {}) if s else n not in example)]
    assert not missing, f"add to compose/tempo-anomaly.example.yaml: {missing}"
