#!/usr/bin/env bash
# Installs (if needed) and starts a throwaway PostgreSQL server on loopback for the tests that
# share one Optuna study between several drivers. Idempotent.
#   URL: postgresql://nasattn:nasattn@127.0.0.1:${NAS_ATTN_PG_PORT:-55432}/nas_attn_test
set -euo pipefail
PORT=${NAS_ATTN_PG_PORT:-55432}
DATA=${NAS_ATTN_PG_DATA:-/tmp/nas-attn-pg}
find_bin() {
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }; done
  return 1
}
BIN=$(find_bin || true)
if [ -z "$BIN" ]; then
  echo "[postgres] installing PostgreSQL (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  BIN=$(find_bin)
fi
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
  RUN_AS=(runuser -u postgres --)
fi
ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" >/dev/null 2>&1; }
if ready; then
  echo "[postgres] already running on 127.0.0.1:$PORT"
  exit 0
fi
# a server killed with its session (CI ends every process a session left) leaves a stale pid file
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" stop -m immediate >/dev/null 2>&1 || true
rm -f "$DATA/postmaster.pid"
if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"; mkdir -p "$DATA"
  [ "$(id -u)" = 0 ] && chown postgres "$DATA"
  pw=$(mktemp); echo nasattn > "$pw"; chmod 644 "$pw"
  "${RUN_AS[@]}" "$BIN/initdb" -D "$DATA" -U nasattn --pwfile="$pw" -A scram-sha-256 >/dev/null
  rm -f "$pw"
fi
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c max_connections=200" start >/dev/null
PGPASSWORD=nasattn psql -h 127.0.0.1 -p "$PORT" -U nasattn -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='nas_attn_test'" | grep -q 1 || \
  PGPASSWORD=nasattn psql -h 127.0.0.1 -p "$PORT" -U nasattn -d postgres -qc "CREATE DATABASE nas_attn_test"
echo "[postgres] running on 127.0.0.1:$PORT"
