#!/usr/bin/env bash
# Runs the whole platform locally on a fresh machine: installs what is
# missing, builds the release binaries, provisions a private PostgreSQL under
# .local/pg (unless DATABASE_URL points at one), then hands over to
# ordertrail-local, which migrates, seeds, hosts an embedded Kafka-protocol
# broker (unless KAFKA_BROKERS is set) and starts every service.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_packages

log "building release binaries (first build takes several minutes)"
cargo build --release --locked --workspace --bins

if [ -z "${DATABASE_URL:-}" ]; then
  PGDIR="$ROOT/.local/pg"
  PGPORT=${PGPORT:-$(cat "$ROOT/.local/pg.port" 2>/dev/null || free_port)}
  mkdir -p "$ROOT/.local"
  echo "$PGPORT" > "$ROOT/.local/pg.port"
  # postgres (run as the postgres user when we are root) must reach the data dir.
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$ROOT/.local"; then
    PGDIR="/var/tmp/ordertrail-pg-$(echo "$ROOT" | md5sum | cut -c1-8)"
  fi
  trap 'stop_private_pg "$PGDIR"' EXIT
  log "starting PostgreSQL on 127.0.0.1:$PGPORT (data: $PGDIR)"
  start_private_pg "$PGDIR" "$PGPORT" on
  export DATABASE_URL="postgres://ordertrail@127.0.0.1:$PGPORT/ordertrail"
fi

"${CARGO_TARGET_DIR:-$ROOT/target}/release/ordertrail-local" "$@"
