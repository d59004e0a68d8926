"""Declaring settings: each field's default, bounds and meaning, written once.

A stage's settings are a frozen dataclass whose fields are made with `setting(...)`. The
environment variable follows from the section and the field name (`ingest.batch_size` →
`TLA_INGEST_BATCH_SIZE`); validation reads the bounds declared here, and the docs' table
of settings is rendered from the same declarations (services/config.py loads them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError

ENV_PREFIX = "TLA_"


@dataclass(frozen=True, slots=True)
class Spec:
    """What the docs say of a setting, and the bounds its value must keep."""

    meaning: str
    min: float | None = None  # value >= min
    above: float | None = None  # value > above
    max: float | None = None  # value <= max
    choices: tuple[str, ...] = ()
    # When the default is None: what an unset value means, e.g. "derived: 5 s, or the
    # window if shorter" or "no Tempo polling".
    unset: str = ""
    why: str = ""  # said when a bound is broken: the reason for it


def setting(default: Any, meaning: str, *, min: float | None = None,
            above: float | None = None, max: float | None = None,
            choices: tuple[str, ...] = (), unset: str = "", why: str = "") -> Any:
    """A settings field with its default, meaning and bounds (see `Spec`)."""
    spec = Spec(meaning, min, above, max, choices, unset, why)
    return dataclasses.field(default=default, metadata={"spec": spec})


def spec_of(f: dataclasses.Field[Any]) -> Spec:
    spec = f.metadata.get("spec")
    if not isinstance(spec, Spec):
        raise TypeError(f"settings field {f.name!r} is not declared with setting(...)")
    return spec


def env_name(section: str | None, name: str) -> str:
    """`TLA_<SECTION>_<NAME>`, or `TLA_<NAME>` for a top-level setting."""
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}" if section else \
        f"{ENV_PREFIX}{name.upper()}"


def check_bounds(section: str | None, values: object) -> None:
    """Every field of `values` within its declared bounds (None: unset, always fine)."""
    for f in dataclasses.fields(values):  # type: ignore[arg-type]
        value = getattr(values, f.name)
        if value is None or dataclasses.is_dataclass(value):
            continue
        spec = spec_of(f)
        broken = _broken_bound(spec, value)
        if broken:
            why = f" ({spec.why})" if spec.why else ""
            raise ConfigError(f"{env_name(section, f.name)} must be {broken}, got {value!r}{why}")


def _broken_bound(spec: Spec, value: Any) -> str | None:
    if spec.choices and value not in spec.choices:
        return " or ".join(repr(c) for c in spec.choices)
    if spec.above is not None and not value > spec.above:
        return f"> {spec.above:g}"
    if spec.min is not None and value < spec.min:
        return f">= {spec.min:g}"
    if spec.max is not None and value > spec.max:
        return f"<= {spec.max:g}"
    return None
