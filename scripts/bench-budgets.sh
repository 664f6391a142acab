#!/usr/bin/env bash
# Measures every absolute budget of BENCHMARKS.md with `cloudctl bench`, one scenario after another,
# each against the local mesh of real cloudd processes it starts on 127.0.0.1, and prints a
# table: scenario, figure, budget, met or missed. (The relative budgets — throughput against
# Redis and against a bare QUIC ping-pong — are scripts/bench-compare.sh's.)
#
# Usage: scripts/bench-budgets.sh [--quick] [--no-build]
#   --quick      small runs (a smoke test: figures are not comparable with the budgets)
#   --no-build   use the binaries already in target/release
set -euo pipefail

QUICK=0
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-budgets: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$BUILD" = 1 ]; then
  cargo build --release --bins >&2
fi
CTL=${CTL:-target/release/cloudctl}
[ -x "$CTL" ] || { echo "bench-budgets: $CTL is missing (drop --no-build)" >&2; exit 1; }

if [ "$QUICK" = 1 ]; then
  FANOUT=(--rate 2000 --duration 2s); MIGRATION=(--clients 50 --migrations 20)
  DRAIN=(--clients 200); IDLE=(--clients 1000 --settle 1s); FAILOVER=(--idle-timeout 2s)
  BLIP=(--clients 20)
else
  FANOUT=(--rate 10000 --duration 10s); MIGRATION=(--clients 200 --migrations 100)
  DRAIN=(--clients 10000); IDLE=(--clients 10000); FAILOVER=(--idle-timeout 5s --clients-per-node 100)
  BLIP=(--clients 100)
fi

OUT="target/bench-budgets"
mkdir -p "$OUT"
RESULTS="$OUT/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

# 1 once a scenario failed (it printed no figures); the exit status.
FAILED=0
# One scenario, its JSON line appended to the results file and echoed; a scenario that
# fails prints nothing, so its rows say FAILED.
run() {
  local line
  echo "== cloudctl bench $*" >&2
  if ! line=$("$CTL" --json bench "$@" 2> >(grep -v '^bench: \(dir\|node\)' >&2)); then
    echo "bench-budgets: cloudctl bench $1 failed" >&2
    return 0
  fi
  printf '%s\n' "$line" >> "$RESULTS"
  printf '%s\n' "$line"
}
field() { printf '%s\n' "$1" | sed -n "s/.*\"$2\":\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" | head -n 1; }
# round VALUE DECIMALS
round() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }
# verdict FIGURE OP LIMIT: "met" when FIGURE OP LIMIT holds (OP is < or ==); FAILED when
# there is no figure (the scenario failed).
verdict() {
  if [ -z "$1" ]; then
    echo FAILED
  elif awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN { exit !((op == "<") ? (a < b) : (a == b)) }'; then
    echo met
  else
    echo MISSED
  fi
}

fanout=$(run fanout "${FANOUT[@]}")
migration=$(run migration "${MIGRATION[@]}")
drain=$(run drain "${DRAIN[@]}")
idle=$(run idle "${IDLE[@]}")
failover=$(run failover "${FAILOVER[@]}")
blip=$(run blip "${BLIP[@]}")
for result in "$fanout" "$migration" "$drain" "$idle" "$failover" "$blip"; do
  [ -n "$result" ] || FAILED=1
done

f_p99=$(field "$fanout" p99_ms); f_missing=$(field "$fanout" missing)
m_p99=$(field "$migration" p99_ms); m_lost=$(field "$migration" lost)
m_dup=$(field "$migration" duplicated); m_err=$(field "$migration" client_errors)
d_s=$(field "$drain" seconds); [ -n "$d_s" ] && d_s=$(round "$d_s" 3); d_moved=$(field "$drain" moved)
i_rss=$(field "$idle" rss_bytes); i_n=$(field "$idle" clients)
i_mib=$( { [ -n "$i_rss" ] && awk -v b="$i_rss" 'BEGIN { printf "%.0f", b / 1048576 }'; } || true)
fo_host=$(field "$failover" new_host_ms); [ -n "$fo_host" ] && fo_host=$(round "$fo_host" 0)
fo_del=$(field "$failover" max_ms); [ -n "$fo_del" ] && fo_del=$(round "$fo_del" 0)
fo_budget=$(field "$failover" budget_ms); [ -n "$fo_budget" ] && fo_budget=$(round "$fo_budget" 0); fo_missing=$(field "$failover" missing)
fo_back=$(field "$failover" restored_ms); [ -n "$fo_back" ] && fo_back=$(round "$fo_back" 0)
fo_rbudget=$(field "$failover" restore_budget_ms); [ -n "$fo_rbudget" ] && fo_rbudget=$(round "$fo_rbudget" 0)
b_max=$(field "$blip" max_ms); [ -n "$b_max" ] && b_max=$(round "$b_max" 0)
b_del=$(field "$blip" deletions); b_new=$(field "$blip" new_sessions)

{
  printf '\n%-58s %14s %12s %s\n' "budget (BENCHMARKS.md)" "figure" "limit" "verdict"
  printf '%-58s %14s %12s %s\n' "fan-out p99, post on node-1 -> subscriber on node-3, ms" \
    "$f_p99" "< 5" "$(verdict "$f_p99" '<' 5)"
  printf '%-58s %14s %12s %s\n' "fan-out notifications missing" "$f_missing" "0" \
    "$(verdict "$f_missing" == 0)"
  printf '%-58s %14s %12s %s\n' "migration stall p99, ms" "$m_p99" "< 10" "$(verdict "$m_p99" '<' 10)"
  printf '%-58s %14s %12s %s\n' "migration notifications lost + duplicated, client errors" \
    "${m_lost:-?} + ${m_dup:-?}, ${m_err:-?}" "0, 0" \
    "$(verdict "$( [ -n "$m_lost" ] && echo $((m_lost + m_dup + m_err)))" == 0)"
  printf '%-58s %14s %12s %s\n' "drain of $d_moved clients, s" "$d_s" "< 3" "$(verdict "$d_s" '<' 3)"
  # The goal: 200 MiB for 10,000 idle clients (about 20 KiB each).
  i_limit=$( { [ -n "$i_n" ] && awk -v n="$i_n" 'BEGIN { printf "%.0f", n * 200 / 10000 }'; } || echo 200)
  printf '%-58s %14s %12s %s\n' "RSS of one node with $i_n idle clients, MiB" "$i_mib" "< $i_limit" \
    "$(verdict "$i_mib" '<' "$i_limit")"
  printf '%-58s %14s %12s %s\n' "kill -9 of the host: new host agreed, ms" "$fo_host" "< $fo_budget" \
    "$(verdict "$fo_host" '<' "$fo_budget")"
  printf '%-58s %14s %12s %s\n' "kill -9 of the host: NodeLost at every survivor, ms" "$fo_del" \
    "< $fo_budget" "$(verdict "$fo_del" '<' "$fo_budget")"
  printf '%-58s %14s %12s %s\n' "kill -9 of the host: NodeLost deletions missing" "$fo_missing" "0" \
    "$(verdict "$fo_missing" == 0)"
  printf '%-58s %14s %12s %s\n' "kill -9 of the host: its clients' rows back, ms" "$fo_back" \
    "< $fo_rbudget" "$(verdict "$fo_back" '<' "$fo_rbudget")"
  printf '%-58s %14s %12s %s\n' "blip within the grace: next call after the path is back, ms" \
    "$b_max" "< 1000" "$(verdict "$b_max" '<' 1000)"
  printf '%-58s %14s %12s %s\n' "blip within the grace: deletions, new sessions" \
    "${b_del:-?}, ${b_new:-?}" "0, 0" \
    "$(verdict "$( [ -n "$b_del" ] && echo $((b_del + b_new)))" == 0)"
  printf '\nraw JSON lines: %s\n' "$RESULTS"
} | tee "${RESULTS%.jsonl}.txt"
exit "$FAILED"
