#!/usr/bin/env bash
# Shared shell helpers for scripts/run.sh, scripts/test.sh and scripts/bench.sh.
# Sourced, not executed. Installs what a fresh Debian machine lacks and manages
# private PostgreSQL clusters (no Docker needed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT

log() { printf '[ordertrail] %s\n' "$*" >&2; }

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
  if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
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
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=$fsync -c synchronous_commit=$fsync -c max_connections=400 -c shared_buffers=512MB" start >/dev/null \
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
