#!/usr/bin/env bash
# Chaos drill: runs the whole local stack (ordertrail-local: API, relay, saga,
# three projectors, embedded Kafka-protocol broker) on a private PostgreSQL,
# places orders at a steady rate through the public API and drives them to
# delivery (bench/src/bin/chaos_driver.rs) for N minutes while it
#   - kills random service processes with kill -9 (the launcher restarts them),
#   - restarts PostgreSQL,
#   - stops the broker for 30 s,
#   - holds an idle transaction (with a transaction id) open for 60 s,
#   - makes the payment provider fail for a while: new orders pay with cards
#     the simulated provider is unavailable for (see chaos_driver), and every
#     capture, void and refund is refused or unanswered meanwhile
#     (ORDERTRAIL_PROVIDER_FAULT_FILE; the driver cancels some orders and
#     refunds some deliveries so that voids and refunds happen),
# then lets the system settle and prints orders placed / delivered / cancelled
# with reasons, HTTP answers by status, lost and doubled effects, the
# read-model verify of every projector and the money reconciliation.
#
#   scripts/chaos.sh [MINUTES]      default 3
#   CHAOS_SHORT=1 scripts/chaos.sh  the test suite's ~45 s version (shorter faults)
#   CHAOS_PROFILE=debug|release     which build to run (default release)
#   CHAOS_RATE=2                    orders per second
# Exit status 0 only when: no HTTP 500, nothing lost, nothing doubled, no
# cancelled order still holding money, every
# verify clean, reconciliation without breaks.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_packages

MINUTES=${1:-3}
SHORT=${CHAOS_SHORT:-0}
PROFILE=${CHAOS_PROFILE:-release}
RATE=${CHAOS_RATE:-2}
if [ "$SHORT" = 1 ]; then
  DURATION=${CHAOS_SECONDS:-45}
  BROKER_DOWN=10 IDLE_TX=15 PROVIDER_OUTAGE=10 KILL_EVERY=9
else
  DURATION=$(python3 -c "print(int(float('$MINUTES') * 60))")
  BROKER_DOWN=30 IDLE_TX=60 PROVIDER_OUTAGE=40 KILL_EVERY=12
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
build_flags=(--locked -p ordertrail-api -p ordertrail-commands -p ordertrail-projections -p ordertrail-launcher -p ordertrail-bench --bins)
if [ "$PROFILE" = release ]; then
  log "building release binaries"
  cargo build --release "${build_flags[@]}"
  BIN=$TARGET_DIR/release
else
  log "building debug binaries"
  cargo build "${build_flags[@]}"
  BIN=$TARGET_DIR/debug
fi

WORK=$(mktemp -d /tmp/ordertrail-chaos.XXXXXX)
chmod 755 "$WORK"
PGDIR=$WORK/pg
PGPORT=$(free_port)
API_PORT=$(free_port)
LAUNCHER=""
cleanup() {
  if [ -n "$LAUNCHER" ]; then kill -TERM "$LAUNCHER" 2>/dev/null || true; wait "$LAUNCHER" 2>/dev/null || true; fi
  if [ -n "${IDLE_PID:-}" ]; then kill "$IDLE_PID" 2>/dev/null || true; fi
  stop_private_pg "$PGDIR"
  if [ "${CHAOS_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK" "$PGDIR.initdb.log"; fi
}
trap cleanup EXIT

log "starting PostgreSQL on 127.0.0.1:$PGPORT"
start_private_pg "$PGDIR" "$PGPORT" off
export DATABASE_URL="postgres://ordertrail@127.0.0.1:$PGPORT/ordertrail"
PSQL=("$(pg_bindir)/psql" -h 127.0.0.1 -p "$PGPORT" -U ordertrail -d ordertrail -qAt)
pg_as=()
[ "$(id -u)" = 0 ] && pg_as=(runuser -u postgres --)

export JWT_SECRET
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export JWT_SECRET_FILE=$WORK/jwt-secret
export LISTEN_ADDR=127.0.0.1:$API_PORT
export ORDERTRAIL_BROKER_DOWN_FILE=$WORK/broker-down
# The simulated provider (API and saga) fails captures, voids and refunds
# while this file exists (empty: refused and unanswered alternately).
export ORDERTRAIL_PROVIDER_FAULT_FILE=$WORK/provider-outage
# One client from one address sends far more than any real caller may.
export RATE_LIMIT_COMMANDS_PER_SUBJECT=0 RATE_LIMIT_QUERIES_PER_SUBJECT=0
export RATE_LIMIT_COMMANDS_PER_ADDRESS=0 RATE_LIMIT_QUERIES_PER_ADDRESS=0
export RUST_LOG=${RUST_LOG:-warn,ordertrail=info}

"$BIN/ordertrail-local" --no-sim >"$WORK/stack.log" 2>&1 &
LAUNCHER=$!
BASE=http://127.0.0.1:$API_PORT
wait_ready "$BASE" "$LAUNCHER" "$WORK/stack.log" 60

log "driving orders for ${DURATION}s at ${RATE}/s while injecting faults (logs: $WORK)"
"$BIN/chaos_driver" --base "$BASE" --duration-secs "$DURATION" --rate "$RATE" \
  --provider-outage-file "$WORK/provider-outage" --out "$WORK/driver.json" \
  --order-deadline-secs "$((DURATION + 120))" >"$WORK/driver.txt" 2>&1 &
DRIVER=$!

faults=()
note() { faults+=("$(printf '%4ss  %s' "$1" "$2")"); log "t=${1}s: $2"; }
kill_random() {
  local t=$1 children pid name
  children=$(pgrep -P "$LAUNCHER" || true)
  [ -n "$children" ] || return 0
  pid=$(echo "$children" | shuf -n 1)
  name=$(ps -o comm= -p "$pid" 2>/dev/null || echo "?")
  kill -9 "$pid" 2>/dev/null && note "$t" "kill -9 $name (pid $pid)"
}

T_PG=$((DURATION * 15 / 100))
T_BROKER=$((DURATION * 30 / 100))
T_IDLE=$((DURATION * 50 / 100))
T_PROVIDER=$((DURATION * 70 / 100))
start=$(date +%s)
while kill -0 "$DRIVER" 2>/dev/null; do
  t=$(( $(date +%s) - start ))
  if [ "$t" -ge "$DURATION" ]; then sleep 1; continue; fi
  if [ "$t" -gt 0 ] && [ $((t % KILL_EVERY)) = 0 ]; then kill_random "$t"; fi
  if [ "$t" = "$T_PG" ]; then
    note "$t" "PostgreSQL restart (pg_ctl restart -m fast)"
    "${pg_as[@]}" "$(pg_bindir)/pg_ctl" -D "$PGDIR" -m fast -w restart \
      -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=400" >/dev/null
  fi
  if [ "$t" = "$T_BROKER" ]; then note "$t" "broker down for ${BROKER_DOWN}s"; touch "$ORDERTRAIL_BROKER_DOWN_FILE"; fi
  if [ "$t" = $((T_BROKER + BROKER_DOWN)) ]; then note "$t" "broker up"; rm -f "$ORDERTRAIL_BROKER_DOWN_FILE"; fi
  if [ "$t" = "$T_IDLE" ]; then
    note "$t" "idle transaction with an xid held ${IDLE_TX}s"
    ( echo "BEGIN; SELECT pg_current_xact_id();"; sleep "$IDLE_TX"; echo "ROLLBACK;" ) \
      | "${PSQL[@]}" >/dev/null 2>&1 &
    IDLE_PID=$!
  fi
  if [ "$t" = "$T_PROVIDER" ]; then note "$t" "payment provider failing for ${PROVIDER_OUTAGE}s"; touch "$WORK/provider-outage"; fi
  if [ "$t" = $((T_PROVIDER + PROVIDER_OUTAGE)) ]; then note "$t" "payment provider back"; rm -f "$WORK/provider-outage"; fi
  sleep 1
done
rm -f "$ORDERTRAIL_BROKER_DOWN_FILE" "$WORK/provider-outage"
wait "$DRIVER" || true

# Settle: every delivered order captured, the relay and every consumer at the
# store's head (nothing more to apply).
sql() { "${PSQL[@]}" -c "$1"; }
UNCAPTURED="SELECT count(*) FROM events d WHERE d.event_type = 'OrderDelivered' AND NOT EXISTS (
  SELECT 1 FROM events a JOIN events c ON c.aggregate_type = a.aggregate_type AND c.aggregate_id = a.aggregate_id
    AND c.event_type = 'PaymentCaptured'
  WHERE a.event_type = 'PaymentAuthorized' AND a.payload->>'order_id' = d.aggregate_id)"
# Cancelled or rejected orders whose authorization is neither voided nor
# captured, or whose capture is not refunded: a release retry still waits.
HELD="SELECT count(*) FROM events c JOIN events a ON a.event_type = 'PaymentAuthorized' AND a.payload->>'order_id' = c.aggregate_id
  WHERE c.event_type IN ('OrderCancelled', 'OrderRejected') AND NOT EXISTS (
    SELECT 1 FROM events r WHERE r.aggregate_type = 'Payment' AND r.aggregate_id = a.aggregate_id
      AND r.event_type IN ('PaymentVoided', 'PaymentRefunded'))"
log "letting the system settle"
settled=0
for _ in $(seq 1 150); do
  uncaptured=$(sql "$UNCAPTURED" 2>/dev/null || echo x)
  held=$(sql "$HELD" 2>/dev/null || echo x)
  lag=$(curl -fsS -H "authorization: Bearer $("$BIN/mint-token" --role ops --sub chaos --ttl 600 2>/dev/null)" \
    "$BASE/v1/projectors/status" 2>/dev/null | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(sum(int(p.get("events_behind") or 0) for p in d["items"]))' 2>/dev/null || echo x)
  if [ "$uncaptured" = 0 ] && [ "$held" = 0 ] && [ "$lag" = 0 ]; then settled=1; break; fi
  sleep 1
done
kill -TERM "$LAUNCHER"; wait "$LAUNCHER" 2>/dev/null || true; LAUNCHER=""

cat "$WORK/driver.txt"
echo "faults injected:"
printf '  %s\n' "${faults[@]}"

echo "== checks against the event store =="
ids() { python3 -c 'import json,sys;print("{" + ",".join(json.load(open(sys.argv[1]))[sys.argv[2]]) + "}")' "$WORK/driver.json" "$1"; }
placed_ids=$(ids placed_order_ids)
delivered_ids=$(ids delivered_order_ids)
lost_orders=$(sql "SELECT count(*) FROM unnest('$placed_ids'::text[]) id WHERE NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'Order' AND aggregate_id = id AND event_type = 'OrderPlaced')")
lost_deliveries=$(sql "SELECT count(*) FROM unnest('$delivered_ids'::text[]) id WHERE NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'Order' AND aggregate_id = id AND event_type = 'OrderDelivered')")
uncaptured=$(sql "$UNCAPTURED")
held=$(sql "$HELD")
double_capture=$(sql "SELECT count(*) FROM (SELECT aggregate_id FROM events WHERE event_type = 'PaymentCaptured' GROUP BY 1 HAVING count(*) > 1) x")
double_provider=$(sql "SELECT count(*) FROM (SELECT payment_id, operation FROM simulated_provider_operations WHERE operation IN ('authorization', 'capture', 'void') GROUP BY 1, 2 HAVING count(*) > 1) x")
store_orders=$(sql "SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
echo "  orders in the store:                  $store_orders"
echo "  answered 201 but not in the store:    $lost_orders"
echo "  delivered but no OrderDelivered:      $lost_deliveries"
echo "  delivered but payment not captured:   $uncaptured"
echo "  payments captured twice:              $double_capture"
echo "  provider operations done twice:       $double_provider"
echo "  cancelled but money not released:     $held"
echo "  settled (no lag, captured, released): $([ $settled = 1 ] && echo yes || echo NO)"
echo "  provider failures recorded as events:"
sql "SELECT event_type || ' ' || CASE WHEN (payload->>'answered')::boolean THEN 'refused' ELSE 'unanswered' END, count(*)
     FROM events WHERE event_type IN ('PaymentCaptureFailed', 'PaymentVoidFailed', 'PaymentRefundFailed')
     GROUP BY 1 ORDER BY 1" | sed 's/^/    /'
echo "  voids and refunds done:               $(sql "SELECT string_agg(event_type || ' ' || n, ', ') FROM (SELECT event_type, count(*) n FROM events WHERE event_type IN ('PaymentVoided', 'PaymentRefunded') GROUP BY 1 ORDER BY 1) x")"
echo "  orders by final status (read model):"
sql "SELECT status, count(*) FROM order_history GROUP BY 1 ORDER BY 2 DESC" | sed 's/^/    /'

echo "== read-model verify =="
verify_ok=1
for p in order-history rider-etas settlements; do
  if "$BIN/ordertrail-$p" verify --quiet >"$WORK/verify-$p.txt" 2>&1; then
    echo "  $p: $(head -1 "$WORK/verify-$p.txt")"
  else
    verify_ok=0
    echo "  $p: FAILED"; sed 's/^/    /' "$WORK/verify-$p.txt" | head -20
  fi
done

echo "== reconciliation =="
from=$(date -u -d yesterday +%F); to=$(date -u -d tomorrow +%F)
statement=$WORK/statement.csv
: >"$statement"
for d in $(seq 0 2); do
  day=$(date -u -d "$from + $d day" +%F)
  "$BIN/ordertrail-reconcile" provider-statement --date "$day" | { [ "$d" = 0 ] && cat || tail -n +2; } >>"$statement"
done
if "$BIN/ordertrail-reconcile" settlements --from "$from" --to "$to" --provider-statement "$statement" >"$WORK/reconcile.txt" 2>&1; then
  reconcile_ok=1
else
  reconcile_ok=0
fi
sed 's/^/  /' "$WORK/reconcile.txt" | head -40

http500=$(python3 -c 'import json,sys;print(sum(n for k, n in json.load(open(sys.argv[1]))["http"].items() if k.startswith("500")))' "$WORK/driver.json")
echo "== verdict =="
echo "  HTTP 500: $http500; lost: $((lost_orders + lost_deliveries)); doubled: $((double_capture + double_provider)); uncaptured: $uncaptured; not released: $held; verify: $([ $verify_ok = 1 ] && echo clean || echo BROKEN); reconciliation: $([ $reconcile_ok = 1 ] && echo clean || echo BREAKS)"
if [ "$http500" = 0 ] && [ "$lost_orders" = 0 ] && [ "$lost_deliveries" = 0 ] && [ "$uncaptured" = 0 ] && [ "$held" = 0 ] \
  && [ "$double_capture" = 0 ] && [ "$double_provider" = 0 ] && [ $verify_ok = 1 ] && [ $reconcile_ok = 1 ]; then
  echo "  PASS"
else
  echo "  FAIL (logs kept in $WORK)"; CHAOS_KEEP=1
  exit 1
fi
