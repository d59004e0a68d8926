#!/usr/bin/env bash
# Run the whole pipeline with demo traffic on the embedded store: needs only Python 3.11.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
exec tempo-anomaly demo "$@"
