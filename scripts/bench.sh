#!/usr/bin/env bash
# Benchmarks, in release mode, against a private PostgreSQL with fsync on:
#   scripts/bench.sh place-orders [args]   # write side vs pgbench ceiling (issue 2)
#   scripts/bench.sh relay [args]          # relay catch-up and publish lag (bench/RELAY.md)
#   scripts/bench.sh projections [args]    # projector catch-up (bench/PROJECTIONS.md)
#   scripts/bench.sh freshness [args]      # command response -> visible through the query API
#   scripts/bench.sh rebuild [args]        # rebuild / verify / store catch-up of each read model from >= 1M events (issue 10)
#   scripts/bench.sh reconcile [args]      # reconcile one day of 100,000 orders (issue 11)
#   scripts/bench.sh sse [args]            # command response -> SSE client push latency, 200 clients (issue 14)
#   scripts/bench.sh lunch [args]          # lunch rush end to end: a sweep of order rates, placed -> confirmed / visible p99s, consumer lag (issue 16)
#   scripts/bench.sh growth [args]         # empty vs grown store (--events, default 10M): p99s and disk per event (issue 16)
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_packages
what=${1:-place-orders}
shift || true
case "$what" in
  place-orders) bin=place_orders ;;
  relay) bin=relay_bench ;;
  projections) bin=projection_bench ;;
  freshness) bin=freshness_bench ;;
  rebuild) bin=rebuild_bench ;;
  reconcile) bin=reconcile_bench ;;
  sse) bin=sse_bench ;;
  growth) bin=growth_bench ;;
  lunch) bin=lunch_bench ;;
  *) echo "unknown benchmark: $what" >&2; exit 2 ;;
esac
cargo build --release --locked -p ordertrail-api -p ordertrail-projections -p ordertrail-bench --bins
PGDIR=""
trap remove_private_pg EXIT
private_pg_unless_given bench on
"${CARGO_TARGET_DIR:-$ROOT/target}/release/$bin" "$@"
