#!/usr/bin/env bash
# Regenerates the figures in BENCHMARKS.md: every scenario at the issue's sizes, on SQLite and on
# PostgreSQL, each beside the bare-stack baseline measured seconds later in the same run.
#
#   loadgen/bench.sh [SCENARIO…]        # default: all; results in bench/results/*.json
#
# PostgreSQL: WARD_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres); a
# fresh database is created for each run and dropped after it. N (default 10000) sets the
# agents of hold, fanout and restart.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p ward-loadgen -p ward-controller -p ward-agent
lg="$target/release/ward-loadgen"
out=bench/results
mkdir -p "$out"
pg=${WARD_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
n=${N:-10000}
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(enroll checkin-5000 checkin-500 checkin-max hold fanout restart agent-idle)

run() {
  local name=$1
  shift
  echo "== $name ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local status=0
  "$lg" --output json "$@" >"$out/$name.json" || status=$?
  [ $status -eq 0 ] || echo "   $name exited $status: see the messages above and $out/$name.json" >&2
}

for scenario in "${scenarios[@]}"; do
  for store in sqlite postgres; do
    flags=()
    [ "$store" = postgres ] && flags=(--postgres "$pg")
    case $scenario in
      enroll) run "enroll-$store" "${flags[@]}" enroll --agents 2000 ;;
      checkin-5000) run "checkin-5000-$store" "${flags[@]}" checkin --agents 1000 --rate 5000 --duration 10s ;;
      checkin-500) run "checkin-500-$store" "${flags[@]}" checkin --agents 1000 --rate 500 --duration 10s ;;
      checkin-max) run "checkin-max-$store" "${flags[@]}" checkin --agents 1000 --rate max --duration 10s ;;
      hold) run "hold-$store" "${flags[@]}" hold --agents "$n" ;;
      fanout) run "fanout-$store" "${flags[@]}" fanout --agents "$n" --plot "bench/fanout-$store.svg" ;;
      restart) run "restart-$store" "${flags[@]}" restart --agents "$n" ;;
      agent-idle) [ "$store" = sqlite ] && run agent-idle agent-idle --window 60s ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done
done
