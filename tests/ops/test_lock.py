"""The committed locks: every dependency pinned, within pyproject.toml's ranges, with hashes."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.ops.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+)")


def pins(name: str) -> dict[str, str]:
    """{canonical name: version} of a lock, asserting each pin carries hashes."""
    text = (ROOT / "requirements" / name).read_text()
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = PIN.match(block)
        if match:
            assert "--hash=sha256:" in block, f"{name}: {match[1]} has no hash"
            out[canonicalize_name(match[1])] = match[2]
    return out


@pytest.mark.parametrize(("lock", "needs"), [
    ("run.lock", PROJECT["dependencies"]),
    ("test.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]),
])
def test_the_lock_pins_every_dependency_within_its_range(lock: str, needs: list[str]) -> None:
    pinned = pins(lock)
    for spec in map(Requirement, needs):
        name = canonicalize_name(spec.name)
        assert name in pinned, f"{lock} lacks {spec.name}: run ./scripts/lock.sh"
        assert spec.specifier.contains(pinned[name], prereleases=True), \
            f"{lock} pins {name}=={pinned[name]} outside {spec}: run ./scripts/lock.sh"
    # The build tools are pinned too, so installing the project fetches nothing unpinned.
    assert {"setuptools", "wheel"} <= set(pinned)


def test_both_locks_agree_on_what_they_share() -> None:
    run, test = pins("run.lock"), pins("test.lock")
    assert {name: test.get(name) for name in run} == run
