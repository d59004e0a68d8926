#!/usr/bin/env bash
# Create .venv (if needed) and install the project into it; sourced by the other scripts.
# Usage: source scripts/bootstrap.sh [extra]   (extra: "test" installs the test tools too)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "tempo-anomaly needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "bootstrap: creating $ROOT/.venv" >&2
  "$PY" -m venv "$ROOT/.venv"
fi
# Dependencies from the committed lock (exact versions, hashes checked), then the project
# itself, built with the locked setuptools: nothing unpinned is installed.
lock="$ROOT/requirements/run.lock"
[ "${1:-}" = "test" ] && lock="$ROOT/requirements/test.lock"
stamp="$ROOT/.venv/.installed-${1:-run}"
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "bootstrap: installing dependencies into .venv from ${lock#$ROOT/} (first run takes a minute)" >&2
  pip=("$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" --require-hashes -r "$lock"
  "${pip[@]}" --no-deps --no-build-isolation -e "$ROOT"
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
