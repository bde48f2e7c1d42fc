#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document with Schemathesis, once per
# role (customer, restaurant, rider, ops, admin), and fails on any finding:
#   - a server error (5xx),
#   - a response that does not match its documented schema,
#   - a schema-valid request the server rejects (400/422).
#
# Bounded: SCHEMATHESIS_MAX_EXAMPLES (default 5) examples per operation and
# role, about 2-3 minutes on 2 cores once the API is built. Builds the API
# (debug profile, shared with `cargo nextest`), starts it on a free port
# against a scratch database (migrated and seeded by the API's migrate job), and
# stops both at the end. PostgreSQL: the cluster DATABASE_URL names (a
# scratch database is created in it and dropped), else a private cluster.
# Schemathesis is installed into a virtualenv (pinned version) on first use.
# The Server-Sent Event streams are left out (a 200 never ends); their
# refusals are covered by api/tests/it/streams.rs.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_packages

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-10}
VENV=${SCHEMATHESIS_VENV:-$ROOT/.local/schemathesis-venv}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/ordertrail-schemathesis.XXXXXX)
API_PID="" PGDIR="" SCRATCH_DB=""

cleanup() {
  [ -n "$API_PID" ] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null
  drop_scratch_db
  remove_private_pg
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

private_pg_unless_given st off
create_scratch_db schemathesis
API_DB_URL="${DATABASE_URL%/*}/$SCRATCH_DB"

log "building the API"
cargo build -q --locked -p ordertrail-api -p ordertrail-launcher --bins
export JWT_SECRET DROPOFF_CODE_KEY
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
DROPOFF_CODE_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
# The migrate job first (the API never migrates while serving), then the API.
DATABASE_URL="$API_DB_URL" RUST_LOG=${RUST_LOG:-warn} \
  "$TARGET/debug/ordertrail-local" --prepare-only --sim off >"$WORK/migrate.log" 2>&1 \
  || { cat "$WORK/migrate.log" >&2; exit 1; }
# Rate limits off: the fuzzer sends bursts from one address and one subject.
DATABASE_URL="$API_DB_URL" LISTEN_ADDR="127.0.0.1:$PORT" \
  RATE_LIMIT_COMMANDS_PER_SUBJECT=0 RATE_LIMIT_QUERIES_PER_SUBJECT=0 \
  RATE_LIMIT_COMMANDS_PER_ADDRESS=0 RATE_LIMIT_QUERIES_PER_ADDRESS=0 \
  RUST_LOG=${RUST_LOG:-warn} \
  "$TARGET/debug/ordertrail-api" >"$WORK/api.log" 2>&1 &
API_PID=$!
wait_ready "$BASE" "$API_PID" "$WORK/api.log" 60

# One token per role; seed ids for the restaurant and the rider.
declare -A SUBJECTS=(
  [customer]=$(python3 -c 'import uuid; print(uuid.uuid4())')
  [restaurant]=00000001-0000-4000-8000-000000000001
  [rider]=00000003-0000-4000-8000-000000000001
  [ops]=ops-schemathesis
  [admin]=admin-schemathesis
)
failed=0
for role in customer restaurant rider ops admin; do
  token=$(MINT_TOKEN_BIN="$TARGET/debug/mint-token" scripts/token.sh "$role" "${SUBJECTS[$role]}" 3600)
  log "schemathesis as $role ($MAX_EXAMPLES examples per operation)"
  if ! SCHEMATHESIS_HOOKS="$ROOT/scripts/schemathesis_hooks.py" "$VENV/bin/schemathesis" run "$BASE/v1/openapi.json" \
      --url "$BASE" \
      --header "Authorization: Bearer $token" \
      --checks not_a_server_error,response_schema_conformance,positive_data_acceptance \
      --phases examples,fuzzing \
      --mode all \
      --exclude-path-regex '/stream' \
      --max-examples "$MAX_EXAMPLES" \
      --seed 13 \
      --workers 1 \
      --no-shrink \
      --generation-database none \
      --suppress-health-check all \
      --request-timeout 10 \
      --warnings off \
      --no-color >"$WORK/$role.log" 2>&1; then
    failed=1
    cat "$WORK/$role.log" >&2
  else
    tail -n 6 "$WORK/$role.log" >&2
  fi
done
if grep -q "panicked\|internal error" "$WORK/api.log"; then
  log "the API logged internal errors:"
  grep "panicked\|internal error" "$WORK/api.log" >&2
  failed=1
fi
[ "$failed" = 0 ] && log "schemathesis: no findings for any role" || log "schemathesis: findings above"
exit "$failed"
