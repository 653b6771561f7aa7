#!/usr/bin/env bash
# Regenerates the figures in BENCHMARKS.md: every scenario at the issue's sizes, on SQLite and on
# PostgreSQL, each beside the bare-stack baseline measured seconds later in the same run.
#
#   loadgen/bench.sh [SCENARIO…]              # default: all; results in bench/results/*.json
#   BEFORE=REV loadgen/bench.sh [SCENARIO…]   # the same for commit REV first (its own build, in
#                                             # a temporary worktree; bench/results/before), then
#                                             # the before/after table into BENCHMARKS.md
#
# PostgreSQL: WARD_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres); a
# fresh database is created for each run and dropped after it. N (default 10000) sets the
# agents of hold, fanout and restart.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
pg=${WARD_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
n=${N:-10000}
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(enroll checkin-5000 checkin-500 checkin-max hold fanout restart agent-idle)

run() {
  local lg=$1 out=$2 name=$3
  shift 3
  mkdir -p "$out"
  echo "== $name, $out ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local status=0
  "$lg" --output json "$@" >"$out/$name.json" || status=$?
  [ $status -eq 0 ] || echo "   $name exited $status: see the messages above and $out/$name.json" >&2
}

# By binary, not package: before the crates were split, wardctl was a binary of ward-controller.
build="cargo build --release --locked --bin ward-loadgen --bin wardctl --bin ward-agent"
abs_target=$(realpath -m "$target")
$build
after="$abs_target/release/ward-loadgen"
sides=("$after bench/results")
if [ -n "${BEFORE:-}" ]; then
  rev=$(git rev-parse --short "$BEFORE")
  # Its sources stay beside the target directory (cargo knows crates by path and mtime, so a
  # second run with the same REV rebuilds nothing); `git worktree remove` it when done.
  tree="$abs_target-before-src"
  if [ "$(git -C "$tree" rev-parse --short HEAD 2>/dev/null)" != "$rev" ]; then
    git worktree remove --force "$tree" >/dev/null 2>&1 || true
    git worktree add --detach "$tree" "$rev" >/dev/null
  fi
  # Its own target directory (its binaries must not replace these), seeded with this one's
  # dependencies so only Ward's crates compile again.
  [ -d "$abs_target-before" ] || cp -a "$abs_target" "$abs_target-before"
  echo "== building $rev (before) in $tree" >&2
  (cd "$tree" && $build --target-dir "$abs_target-before")
  # Before and after run one after the other for each scenario, so both meet the same load.
  sides=("$abs_target-before/release/ward-loadgen bench/results/before" "${sides[@]}")
  mkdir -p bench/results/before
  echo "$rev" >bench/results/before/COMMIT
fi
git rev-parse --short HEAD >bench/results/COMMIT

for scenario in "${scenarios[@]}"; do
  for store in sqlite postgres; do
    flags=()
    [ "$store" = postgres ] && flags=(--postgres "$pg")
    for side in "${sides[@]}"; do
      read -r lg out <<<"$side"
      plot=bench/fanout-$store.svg
      [ "$out" = bench/results ] || plot=$out/fanout-$store.svg
      case $scenario in
        enroll) run "$lg" "$out" "enroll-$store" "${flags[@]}" enroll --agents 2000 ;;
        checkin-5000) run "$lg" "$out" "checkin-5000-$store" "${flags[@]}" checkin --agents 1000 --rate 5000 --duration 10s ;;
        checkin-500) run "$lg" "$out" "checkin-500-$store" "${flags[@]}" checkin --agents 1000 --rate 500 --duration 10s ;;
        checkin-max) run "$lg" "$out" "checkin-max-$store" "${flags[@]}" checkin --agents 1000 --rate max --duration 10s ;;
        hold) run "$lg" "$out" "hold-$store" "${flags[@]}" hold --agents "$n" ;;
        fanout) run "$lg" "$out" "fanout-$store" "${flags[@]}" fanout --agents "$n" --plot "$plot" ;;
        restart) run "$lg" "$out" "restart-$store" "${flags[@]}" restart --agents "$n" ;;
        agent-idle) [ "$store" = sqlite ] && run "$lg" "$out" agent-idle agent-idle --window 60s ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
      esac
    done
  done
done

if [ -d bench/results/before ]; then
  # BENCHMARKS.md's table sits between these two lines; the rest of the file is kept.
  table=$("$after" compare bench/results/before bench/results)
  awk -v table="$table" '
    /^<!-- compare:begin/ { print; print table; skip = 1; next }
    /^<!-- compare:end/ { skip = 0 }
    !skip { print }
  ' BENCHMARKS.md >BENCHMARKS.md.new && mv BENCHMARKS.md.new BENCHMARKS.md
  echo "$table"
fi
