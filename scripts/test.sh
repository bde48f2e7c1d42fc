#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, starts a
# private PostgreSQL (unless DATABASE_URL points at one), checks formatting and
# lints, then runs every test. Kafka tests host librdkafka's mock cluster
# in-process unless KAFKA_BROKERS names a real broker.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_packages

PGDIR=""
trap remove_private_pg EXIT
private_pg_unless_given test off

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

# The short chaos drill: the whole stack under load while processes are
# killed, PostgreSQL restarts, the broker stops, a transaction idles and the
# provider fails; no HTTP 500, nothing lost or doubled, verify and
# reconciliation clean (about a minute and a half).
CHAOS_SHORT=1 CHAOS_PROFILE=debug "$ROOT/scripts/chaos.sh"

# The web console in headless Chromium against the running platform.
"$ROOT/scripts/console-test.sh"

# The OpenAPI contract, fuzzed for every role: no server errors, no response
# that breaks its schema, no schema-valid request rejected.
"$ROOT/scripts/schemathesis.sh"
