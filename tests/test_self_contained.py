"""The tests and scripts need nothing outside the checkout (a fresh clone anywhere runs them)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "scripts")
# `Path(__file__).parents[N]`: must still point inside the checkout.
_PARENTS = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")
# Folders of one development machine, and the shared folder the Tempo samples came from.
_OUTSIDE = re.compile(r"""["'`](?:/work/|/home/|/Users/)|shared/fixtures""")


def _sources() -> list[Path]:
    return sorted(p for top in SCANNED for p in (ROOT / top).rglob("*")
                  if p.suffix in (".py", ".sh") and ".venv" not in p.parts
                  and p.resolve() != Path(__file__).resolve())


def test_no_test_or_script_reaches_outside_the_checkout() -> None:
    wrong = []
    for path in _sources():
        text = path.read_text()
        for m in _PARENTS.finditer(text):
            if not path.resolve().parents[int(m.group(1))].is_relative_to(ROOT):
                wrong.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
        wrong += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in _OUTSIDE.finditer(text)]
    assert not wrong, f"copy what they read into the repository instead: {wrong}"
