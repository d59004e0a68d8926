#!/usr/bin/env bash
# Refresh the committed locks from pyproject.toml's ranges (pip-tools, with hashes).
#   requirements/run.lock   what the product needs (the Dockerfile installs it)
#   requirements/test.lock  the same plus the test tools (./scripts/test.sh and CI install it)
# Both pin the build tools too (setuptools, wheel, pip), so an install needs nothing unpinned.
# Usage: ./scripts/lock.sh            re-pin only what pyproject.toml's ranges now force
#        ./scripts/lock.sh --upgrade  move every pin to the newest release in range
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
tools="${TMPDIR:-/tmp}/tla-lock-tools"
[ -x "$tools/bin/pip-compile" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install --quiet pip-tools; }
common=(--quiet --generate-hashes --allow-unsafe --all-build-deps --strip-extras
        --no-emit-index-url --no-emit-find-links --newline LF "$@")
"$tools/bin/pip-compile" "${common[@]}" -o requirements/run.lock pyproject.toml
"$tools/bin/pip-compile" "${common[@]}" --extra test -o requirements/test.lock pyproject.toml
echo "lock: wrote requirements/run.lock and requirements/test.lock; commit both" >&2
