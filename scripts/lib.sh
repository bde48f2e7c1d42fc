#!/usr/bin/env bash
# Shared shell helpers for scripts/run.sh, scripts/test.sh and scripts/bench.sh.
# Sourced, not executed. Installs what a fresh Debian machine lacks and manages
# private PostgreSQL clusters (no Docker needed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT

log() { printf '[ordertrail] %s\n' "$*" >&2; }

# install_debian_packages PKG...: apt-get install them (as root, or with
# sudo); nothing when none are given.
install_debian_packages() {
  [ $# -gt 0 ] || return 0
  log "installing Debian packages: $*"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Debian packages the build and the local stack need.
ensure_packages() {
  local need=()
  command -v cc >/dev/null || need+=(build-essential)
  command -v make >/dev/null || need+=(make)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  command -v curl >/dev/null || need+=(curl)
  dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
  dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
  [ -n "$(pg_bindir 2>/dev/null)" ] || need+=(postgresql postgresql-contrib)
  install_debian_packages "${need[@]}"
  if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      log "cargo not found: install Rust (rustup) first"
      exit 1
    fi
  fi
}

# Directory of the newest installed PostgreSQL server binaries.
pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_private_pg DIR PORT FSYNC(on|off): initdb (as the postgres user when
# root, since postgres refuses to run as root) and start a cluster on
# 127.0.0.1:PORT with trust auth for the local role `ordertrail`.
start_private_pg() {
  local dir=$1 port=$2 fsync=${3:-on} bindir as=()
  bindir=$(pg_bindir)
  if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    "${as[@]}" "$bindir/initdb" -D "$dir" -U ordertrail --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
      || { cat "$dir.initdb.log" >&2; return 1; }
  fi
  "${as[@]}" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=$fsync -c synchronous_commit=$fsync -c max_connections=400 -c shared_buffers=${PG_SHARED_BUFFERS:-512MB} -c wal_compression=lz4" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  "$bindir/psql" -h 127.0.0.1 -p "$port" -U ordertrail -d postgres -qAtc \
    "SELECT 1 FROM pg_database WHERE datname='ordertrail'" | grep -q 1 \
    || "$bindir/psql" -h 127.0.0.1 -p "$port" -U ordertrail -d postgres -qc "CREATE DATABASE ordertrail" >/dev/null
}

stop_private_pg() {
  local dir=$1 as=()
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  [ -f "$dir/postmaster.pid" ] && "${as[@]}" "$(pg_bindir)/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
}

# private_pg_unless_given LABEL FSYNC(on|off): when DATABASE_URL is unset,
# start a throw-away cluster in a new /tmp/ordertrail-LABEL-pg.* directory,
# set PGDIR to it and export DATABASE_URL; remove_private_pg undoes it.
private_pg_unless_given() {
  if [ -n "${DATABASE_URL:-}" ]; then return 0; fi
  local port
  PGDIR=$(mktemp -d "/tmp/ordertrail-$1-pg.XXXXXX")
  port=$(free_port)
  log "starting a private PostgreSQL (fsync $2) on 127.0.0.1:$port"
  start_private_pg "$PGDIR" "$port" "$2"
  export DATABASE_URL="postgres://ordertrail@127.0.0.1:$port/ordertrail"
}

# Stop and delete the cluster private_pg_unless_given started, if any.
remove_private_pg() {
  if [ -n "${PGDIR:-}" ]; then stop_private_pg "$PGDIR"; rm -rf "$PGDIR" "$PGDIR.initdb.log"; fi
}

# create_scratch_db PREFIX: a new database next to the one DATABASE_URL names;
# sets ADMIN_URL and SCRATCH_DB (drop_scratch_db removes it).
create_scratch_db() {
  ADMIN_URL="${DATABASE_URL%/*}/postgres"
  SCRATCH_DB="$1_$(date +%s)_$$"
  "$(pg_bindir)/psql" "$ADMIN_URL" -qc "CREATE DATABASE \"$SCRATCH_DB\"" >/dev/null
}

drop_scratch_db() {
  if [ -n "${SCRATCH_DB:-}" ]; then
    "$(pg_bindir)/psql" "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$SCRATCH_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}

# wait_ready BASE PID LOG SECONDS: poll BASE/health/ready every 0.5 s until
# it answers; fail, showing the end of LOG, if process PID exits first or
# SECONDS pass.
wait_ready() {
  local base=$1 pid=$2 logfile=$3 i
  for i in $(seq 1 $(($4 * 2))); do
    curl -fsS "$base/health/ready" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  curl -fsS "$base/health/ready" >/dev/null 2>&1 && return 0
  log "$base did not become ready"; tail -n 50 "$logfile" >&2
  return 1
}
