"""The settings reference, rendered from the declarations: docs/configuration.md's table and
compose/tempo-anomaly.example.yaml. `python -m services.config_docs` rewrites both."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.settings import Spec, env_name, spec_of
from services.config import sections

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
EXAMPLE = ROOT / "compose" / "tempo-anomaly.example.yaml"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
EXAMPLE_HEAD = """\
# tempo-anomaly settings, every key at its default (rendered from the declarations by
# `python -m services.config_docs`; docs/configuration.md explains each).
# Every key has an environment variable that overrides it: section.name ->
# TLA_<SECTION>_<NAME> (tempo.url -> TLA_TEMPO_URL); top-level keys -> TLA_<NAME>.
# A null whose comment says "derived" takes its default from another setting.
# Use it with:  tempo-anomaly --config compose/tempo-anomaly.example.yaml run
"""


def settings_fields() -> list[tuple[str | None, dataclasses.Field[Any], Spec]]:
    """(section, field, spec) of every setting, in declaration order."""
    return [(name, f, spec_of(f)) for name, cls in sections() for f in dataclasses.fields(cls)
            if "spec" in f.metadata or not _is_section(f)]


def _is_section(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING


def table() -> str:
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for section, f, spec in settings_fields():
        default = f"unset → {spec.unset}" if f.default is None else f"`{_shown(f.default)}`"
        rows.append(f"| `{env_name(section, f.name)}` | {_cell(default)} | "
                    f"{_cell(_allowed(spec, f.default))} | {_cell(spec.meaning)} |")
    return "\n".join(rows) + "\n"


def _shown(value: Any) -> str:
    """A default as an operator writes it: booleans `on`/`off` (config reads those)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return _scalar(value)


def _allowed(spec: Spec, default: Any) -> str:
    """The values config accepts: bounds, choices, or on/off for a boolean."""
    parts = [f">= {spec.min:g}" if spec.min is not None else "",
             f"> {spec.above:g}" if spec.above is not None else "",
             f"<= {spec.max:g}" if spec.max is not None else "",
             ", ".join(f"`{c}`" for c in spec.choices),
             "`on`, `off`" if isinstance(default, bool) else ""]
    return ", ".join(p for p in parts if p)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _scalar(value: Any) -> str:
    """A default as YAML (and JSON) writes it: strings quoted, booleans lower-case."""
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value) if isinstance(value, (bool, str)) else repr(value)


def example_yaml() -> str:
    lines = [EXAMPLE_HEAD]
    current: str | None = None
    for section, f, spec in settings_fields():
        if section != current:
            lines.append(f"\n{section}:")
            current = section
        indent = "  " if section else ""
        value = "null" if f.default is None else _scalar(f.default)
        note = spec.meaning + (f"; null: {spec.unset}" if f.default is None else "")
        lines.append(f"{indent}{f.name}: {value}  # {note}")
    return "\n".join(lines) + "\n"


def doc_with_table(doc: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def main() -> int:
    DOC.write_text(doc_with_table(DOC.read_text()))
    EXAMPLE.write_text(example_yaml())
    print(f"wrote {DOC.relative_to(ROOT)} and {EXAMPLE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
