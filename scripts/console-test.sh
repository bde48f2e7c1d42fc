#!/usr/bin/env bash
# Browser tests of the web console (/console) in headless Chromium.
#
# Installs Debian's chromium (never a downloaded browser build) and
# playwright-core from the npm registry (`npm ci` into console-tests/node_modules,
# pinned by package-lock.json), builds the workspace binaries (debug profile,
# shared with `cargo nextest`), starts the platform with the launcher
# (ordertrail-local: API, relay, saga, projectors, embedded broker unless
# KAFKA_BROKERS is set) against a scratch database next to the one
# DATABASE_URL names, and runs console-tests/console.test.mjs.
# Screenshots of every page: $CARGO_TARGET_DIR/console-screenshots/*.png.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_packages

# Only what is missing: a machine's own Node.js (e.g. NodeSource's, which
# bundles npm and conflicts with Debian's npm package) is kept.
browser_packages=()
[ -x /usr/bin/chromium ] || browser_packages+=(chromium chromium-driver)
command -v node >/dev/null || browser_packages+=(nodejs)
command -v npm >/dev/null || browser_packages+=(npm)
install_debian_packages "${browser_packages[@]}"
if [ ! -d console-tests/node_modules/playwright-core ] ||
   [ console-tests/package-lock.json -nt console-tests/node_modules/.package-lock.json ]; then
  log "installing playwright-core (npm ci)"
  (cd console-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/ordertrail-console.XXXXXX)
LAUNCHER_PID="" PGDIR="" SCRATCH_DB=""
cleanup() {
  if [ -n "$LAUNCHER_PID" ]; then kill "$LAUNCHER_PID" 2>/dev/null; wait "$LAUNCHER_PID" 2>/dev/null; fi
  drop_scratch_db
  remove_private_pg
  rm -rf "$WORK"
}
trap cleanup EXIT

private_pg_unless_given console off
create_scratch_db console

log "building the workspace binaries"
cargo build -q --locked --workspace --bins

JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
log "starting the platform on $BASE"
DATABASE_URL="${DATABASE_URL%/*}/$SCRATCH_DB" LISTEN_ADDR="127.0.0.1:$PORT" JWT_SECRET="$JWT_SECRET" \
  JWT_SECRET_FILE="$WORK/jwt-secret" RUST_LOG=${RUST_LOG:-warn} \
  "$TARGET/debug/ordertrail-local" ${CONSOLE_TEST_LAUNCHER_ARGS:---no-sim} >"$WORK/platform.log" 2>&1 &
LAUNCHER_PID=$!
wait_ready "$BASE" "$LAUNCHER_PID" "$WORK/platform.log" 120
grep -q "/console/#token=" "$WORK/platform.log" || { log "the launcher printed no console sign-in link"; cat "$WORK/platform.log" >&2; exit 1; }

mint() { JWT_SECRET="$JWT_SECRET" "$TARGET/debug/mint-token" --role "$1" --sub "$2" --ttl 3600; }
RIDER_ID=00000003-0000-4000-8000-000000000008
export BASE RIDER_ID SCREENSHOT_DIR="$TARGET/console-screenshots"
OPS_TOKEN=$(mint ops ops-console-test)
CUSTOMER_TOKEN=$(mint customer "$(python3 -c 'import uuid; print(uuid.uuid4())')")
RESTAURANT_TOKEN=$(mint restaurant 00000001-0000-4000-8000-000000000001)
RIDER_TOKEN=$(mint rider "$RIDER_ID")
export OPS_TOKEN CUSTOMER_TOKEN RESTAURANT_TOKEN RIDER_TOKEN
log "console browser tests (headless Chromium)"
if ! node console-tests/console.test.mjs; then
  log "platform log:"; tail -n 50 "$WORK/platform.log" >&2
  exit 1
fi
