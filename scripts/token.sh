#!/usr/bin/env bash
# Mints a bearer token for the locally running platform:
#   scripts/token.sh ROLE SUBJECT [TTL_SECONDS]
# ROLE is customer, restaurant, rider, ops or admin; for customer, restaurant
# and rider the SUBJECT is their UUID (seed ids are listed in README.md).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[ $# -ge 2 ] || { echo "usage: scripts/token.sh ROLE SUBJECT [TTL_SECONDS]" >&2; exit 2; }
JWT_SECRET=${JWT_SECRET:-$(cat "$ROOT/.local/jwt-secret" 2>/dev/null || true)}
[ -n "$JWT_SECRET" ] || { echo "no .local/jwt-secret: start the platform with scripts/run.sh first" >&2; exit 1; }
bin=${MINT_TOKEN_BIN:-"${CARGO_TARGET_DIR:-$ROOT/target}/release/mint-token"}
[ -x "$bin" ] || bin="cargo run -q --release -p ordertrail-api --bin mint-token --"
JWT_SECRET="$JWT_SECRET" $bin --role "$1" --sub "$2" --ttl "${3:-3600}"
