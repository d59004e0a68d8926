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
spec="$ROOT"
[ "${1:-}" = "test" ] && spec="$ROOT[test]"
stamp="$ROOT/.venv/.installed-${1:-run}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "bootstrap: installing dependencies into .venv (first run takes a minute)" >&2
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
