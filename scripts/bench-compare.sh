#!/usr/bin/env bash
# Compares cloudmesh with its anchors in one run, on this machine, over loopback only
# (BENCHMARKS.md):
#   - single-node post+get throughput (50 clients, pipelining depth 1 and 16) against
#     redis-benchmark (SET+GET, same clients and depth) and a bare QUIC ping-pong built with
#     cloudmesh's own transport settings (examples/quic_pingpong.rs; goal: ≥ 90% of it);
#   - cross-node notification latency at 10k posts/s on a 3-node mesh against NATS
#     publish → delivery on a 3-node NATS cluster (examples/nats_bench.rs);
#   - saturated pub/sub deliveries per second, cloudmesh against NATS with the same
#     publishers, messages in flight per publisher and payload size.
# Rows with a goal print met/MISSED beside the ratio.
# Prints a table of figures and ratios and writes every raw JSON line to a results file.
#
# Usage: scripts/bench-compare.sh [--duration SECONDS] [--quick] [--no-build]
#   --duration S   seconds per measured run (default 10)
#   --quick        2-second runs (a smoke test; figures are noisier)
#   --no-build     use the binaries already in target/release
# Installs redis-server, redis-tools and nats-server with apt-get when missing (as root).
set -euo pipefail

DURATION=10
BUILD=1
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration)
      [ $# -ge 2 ] || { echo "bench-compare: --duration needs a number of seconds" >&2; exit 2; }
      DURATION="$2"; shift 2 ;;
    --duration=*) DURATION="${1#*=}"; shift ;;
    --quick) DURATION=2; shift ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-compare: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DURATION" in
  ''|*[!0-9]*|0) echo "bench-compare: --duration takes a whole number of seconds > 0" >&2; exit 2 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
CLIENTS=50
RATE=10000
# The saturated pub/sub comparison: publishers, and messages each keeps outstanding.
PUBLISHERS=4
IN_FLIGHT=64
# No single run may take longer than this (a hung tool must not hang the comparison).
RUN_TIMEOUT=$((DURATION * 4 + 60))

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench-compare: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Tools

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v redis-benchmark >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; } || missing+=(redis-tools)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    die "missing ${missing[*]}; install them as root (apt-get install ${missing[*]}) or run this script as root"
  fi
  say "installing ${missing[*]}"
  # apt's chatter goes to stderr: stdout is the table.
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not installed (https://rustup.rs)"
for t in awk sed timeout; do
  command -v "$t" >/dev/null 2>&1 || die "$t is required"
done

if [ "$BUILD" -eq 1 ]; then
  say "building (cargo build --release --bins --examples)"
  cargo build --release --bins --examples >&2
fi
BIN="$ROOT/target/release"
PINGPONG="$BIN/examples/quic_pingpong"
NATSBENCH="$BIN/examples/nats_bench"
for b in "$BIN/cloudctl" "$BIN/cloudd" "$PINGPONG" "$NATSBENCH"; do
  [ -x "$b" ] || die "$b is missing (run without --no-build)"
done

# ---------------------------------------------------------------------------------------
# Servers, all on 127.0.0.1, all stopped on exit

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")"
PIDS=()      # servers started here
TOOL_PID=""  # the measuring tool running now, if any
# stop PID SECONDS: TERM, then KILL if it is still there after SECONDS.
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # The tool first: `timeout` passes the TERM on, and cloudctl stops its local mesh on it.
  [ -z "$TOOL_PID" ] || stop "$TOOL_PID" 15
  for pid in "${PIDS[@]}"; do stop "$pid" 5; done
  case "$status" in
    0) rm -rf "$WORK" ;;
    130|143) echo "bench-compare: interrupted; logs are kept in $WORK" >&2 ;;
    *) echo "bench-compare: failed; logs are kept in $WORK" >&2 ;;
  esac
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# tool OUTFILE COMMAND...: runs a measuring tool under a time limit, stdout to OUTFILE, stderr
# to tools.log. In the background and waited for, so Ctrl-C reaches the trap at once (a tool
# under `timeout` is in its own process group and would not see the terminal's Ctrl-C).
tool() {
  local out=$1 rc=0; shift
  timeout "$RUN_TIMEOUT" "$@" >"$out" 2>>"$WORK/tools.log" &
  TOOL_PID=$!
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=""
  return "$rc"
}

USED_PORTS=" "
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 500); do
    p=$((20000 + RANDOM % 40000))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}
take_port() {
  local p
  p="$(free_port)" || die "no free TCP port found on 127.0.0.1"
  USED_PORTS="$USED_PORTS$p "
  echo "$p"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "$what did not come up within ${secs} s (logs in $WORK)"
}

REDIS_PORT="$(take_port)"
# redis-server takes its port below before the NATS ports are probed; reserve all first.
N1="$(take_port)"; N2="$(take_port)"; N3="$(take_port)"
R1="$(take_port)"; R2="$(take_port)"; R3="$(take_port)"

say "starting redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --protected-mode yes --daemonize no --logfile "$WORK/redis.log" &
PIDS+=($!)
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
wait_for 10 "redis-server" redis_up

say "starting a 3-node NATS cluster on 127.0.0.1:$N1,$N2,$N3"
nats_node() { # NAME CLIENT_PORT ROUTE_PORT OTHER_ROUTE_PORT OTHER_ROUTE_PORT
  nats-server -n "$1" -a 127.0.0.1 -p "$2" --cluster_name cloudmesh-bench \
    --cluster "nats://127.0.0.1:$3" --routes "nats://127.0.0.1:$4,nats://127.0.0.1:$5" \
    -l "$WORK/$1.log" &
  PIDS+=($!)
}
nats_node nats-1 "$N1" "$R1" "$R2" "$R3"
nats_node nats-2 "$N2" "$R2" "$R1" "$R3"
nats_node nats-3 "$N3" "$R3" "$R1" "$R2"
nats_routed() { # every node has a route to both others
  local f
  for f in "$WORK"/nats-[123].log; do
    [ "$(grep -c 'Route connection created' "$f" 2>/dev/null || true)" -ge 2 ] || return 1
  done
}
for p in "$N1" "$N2" "$N3"; do wait_for 10 "nats-server on port $p" port_in_use "$p"; done
wait_for 20 "the NATS cluster's routes" nats_routed

say "starting the bare QUIC ping-pong server"
"$PINGPONG" server --listen 127.0.0.1:0 --exit-after "$((RUN_TIMEOUT * 10))s" >"$WORK/pingpong.out" 2>"$WORK/pingpong.log" &
PIDS+=($!)
pingpong_up() { grep -q '^listening ' "$WORK/pingpong.out"; }
wait_for 10 "quic_pingpong server" pingpong_up
read -r _ PP_ADDR _ PP_PIN <"$WORK/pingpong.out"

# ---------------------------------------------------------------------------------------
# Measurements

mkdir -p "$ROOT/target/bench-compare"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RESULTS="$ROOT/target/bench-compare/results-$STAMP.jsonl"
TABLE="$ROOT/target/bench-compare/results-$STAMP.txt"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
printf '{"scenario":"meta","date":"%s","commit":"%s","host":"%s","cpus":%s,"duration_s":%s,"clients":%s,"redis":"%s","nats":"%s"}\n' \
  "$STAMP" "$COMMIT" "$(uname -srm)" "$(nproc 2>/dev/null || echo 0)" "$DURATION" "$CLIENTS" \
  "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" \
  "$(nats-server --version 2>&1 | sed -n 's/.*v\([0-9][^ ]*\).*/\1/p')" >"$RESULTS"

FAILED=0
# field JSON NAME: a numeric field of a one-line JSON object ("" when absent).
field() { printf '%s\n' "$1" | sed -n "s/.*\"$2\":\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" | head -n 1; }

# run NAME COMMAND...: runs a tool that prints one JSON line; keeps it in $OUT and the file.
OUT=""
run() {
  local name=$1; shift
  printf '   %-36s' "$name" >&2
  if tool "$WORK/out" "$@" && OUT="$(tail -n 1 "$WORK/out")" && [ -n "$OUT" ]; then
    printf '%s\n' "$OUT" >>"$RESULTS"
    printf 'ok\n' >&2
  else
    OUT=""
    FAILED=1
    printf 'FAILED (see below)\n' >&2
    tail -n 5 "$WORK/tools.log" | sed 's/^/      /' >&2
  fi
}

# redis NAME DEPTH: SET and GET with 50 clients at DEPTH, N sized to last about DURATION s
# per test (from a short calibration run); JSON line with the mean of SET and GET rps.
redis_run() {
  local name=$1 depth=$2 calib rps n csv set get p50 p99
  printf '   %-36s' "$name" >&2
  tool "$WORK/calib.csv" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CLIENTS" -P "$depth" \
    -d 32 -t set -n $((20000 * depth)) --csv || true
  calib="$(cat "$WORK/calib.csv")"
  rps="$(printf '%s\n' "$calib" | awk -F'","' '$1 ~ /SET/ {print int($2); exit}')"
  if [ -z "$rps" ] || [ "$rps" -le 0 ]; then
    OUT=""; FAILED=1; printf 'FAILED (calibration)\n' >&2; return
  fi
  n=$((rps * DURATION))
  if tool "$WORK/redis-run.csv" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CLIENTS" \
      -P "$depth" -d 32 -t set,get -n "$n" --csv; then
    csv="$(cat "$WORK/redis-run.csv")"
    printf '%s\n' "$csv" >>"$WORK/redis.csv"
    # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    set="$(printf '%s\n' "$csv" | awk -F'","' '$1 ~ /^"SET/ {print $2; exit}')"
    get="$(printf '%s\n' "$csv" | awk -F'","' '$1 ~ /^"GET/ {print $2; exit}')"
    p50="$(printf '%s\n' "$csv" | awk -F'","' '$1 ~ /^"(SET|GET)/ {s+=$5; k++} END {if (k) printf "%.3f", s/k}')"
    p99="$(printf '%s\n' "$csv" | awk -F'","' '$1 ~ /^"(SET|GET)/ {if ($7+0 > m) m=$7+0} END {printf "%.3f", m}')"
    if [ -n "$set" ] && [ -n "$get" ]; then
      OUT="$(awk -v s="$set" -v g="$get" -v d="$depth" -v c="$CLIENTS" -v n="$n" -v p50="${p50:-0}" -v p99="${p99:-0}" \
        'BEGIN {printf "{\"scenario\":\"redis\",\"clients\":%d,\"pipeline\":%d,\"requests_per_test\":%d,\"set_rps\":%s,\"get_rps\":%s,\"ops_per_sec\":%.1f,\"p50_ms\":%s,\"p99_ms\":%s}", c, d, n, s, g, (s+g)/2, p50, p99}')"
      printf '%s\n' "$OUT" >>"$RESULTS"
      printf 'ok\n' >&2
      return
    fi
  fi
  OUT=""; FAILED=1; printf 'FAILED\n' >&2
  tail -n 5 "$WORK/tools.log" | sed 's/^/      /' >&2
}

# Rows of the table: scenario, cloudmesh, baseline, ratio, target.
ROWS=()
# row SCENARIO CM BASE TARGET: TARGET is "min:X" (ratio ≥ X), "max:X" (ratio ≤ X) or "".
row() {
  local scen=$1 cm=$2 base=$3 target=${4:-} ratio verdict
  ratio="$(awk -v a="$cm" -v b="$base" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }')"
  verdict=""
  if [ "$ratio" != n/a ] && [ -n "$target" ]; then
    verdict="$(awk -v r="$ratio" -v t="$target" 'BEGIN {
      split(t, p, ":"); ok = (p[1] == "min") ? (r >= p[2]) : (r <= p[2]);
      printf "%s %s %s", (p[1] == "min") ? ">=" : "<=", p[2], ok ? "ok" : "MISSED" }')"
  fi
  ROWS+=("$(printf '%-40s %12s %12s %7s  %s' "$scen" "${cm:-n/a}" "${base:-n/a}" "$ratio" "$verdict")")
}
fmt() { [ -n "${1:-}" ] && awk -v x="$1" -v d="${2:-0}" 'BEGIN {printf "%.*f", d, x}' || true; }

for depth in 1 16; do
  say "throughput, $CLIENTS clients, pipelining depth $depth, ${DURATION} s each"
  run "quic_pingpong d=$depth" "$PINGPONG" client --server "$PP_ADDR" --pin "$PP_PIN" \
    --clients "$CLIENTS" --pipeline "$depth" --duration "${DURATION}s" --json
  quic="$OUT"
  run "cloudctl bench throughput d=$depth" "$BIN/cloudctl" --json bench throughput \
    --clients "$CLIENTS" --pipeline "$depth" --duration "${DURATION}s"
  cm="$OUT"
  redis_run "redis-benchmark d=$depth" "$depth"
  redis="$OUT"
  cm_ops="$(fmt "$(field "$cm" ops_per_sec)")"
  row "post+get ops/s d=$depth vs Redis SET+GET" "$cm_ops" "$(fmt "$(field "$redis" ops_per_sec)")" "min:1.00"
  # Goals: 0.95 of bare QUIC at depth 1 (one request at a time: little beyond the round
  # trip itself), 0.90 with requests pipelined.
  quic_goal="min:0.90"
  [ "$depth" = 1 ] && quic_goal="min:0.95"
  row "post+get ops/s d=$depth vs bare QUIC" "$cm_ops" "$(fmt "$(field "$quic" ops_per_sec)")" "$quic_goal"
  row "post+get p99 ms d=$depth vs Redis" "$(fmt "$(field "$cm" p99_ms)" 3)" "$(fmt "$(field "$redis" p99_ms)" 3)"
  row "post+get p99 ms d=$depth vs bare QUIC" "$(fmt "$(field "$cm" p99_ms)" 3)" "$(fmt "$(field "$quic" p99_ms)" 3)" "max:1.50"
done

say "pub/sub across a 3-node mesh/cluster: post on node 1, subscriber on node 3"
run "cloudctl bench fanout ${RATE}/s" "$BIN/cloudctl" --json bench fanout --rate "$RATE" \
  --duration "${DURATION}s"
cmf="$OUT"
run "nats_bench latency ${RATE}/s" "$NATSBENCH" latency --pub "127.0.0.1:$N1" --sub "127.0.0.1:$N3" \
  --rate "$RATE" --duration "${DURATION}s" --json
natsl="$OUT"
run "nats_bench throughput" "$NATSBENCH" throughput --pub "127.0.0.1:$N1" --sub "127.0.0.1:$N3" \
  --publishers "$PUBLISHERS" --batch "$IN_FLIGHT" --size 32 --duration "${DURATION}s" --json
natst="$OUT"
row "fan-out ${RATE}/s deliveries/s vs NATS" "$(fmt "$(field "$cmf" ops_per_sec)")" "$(fmt "$(field "$natsl" ops_per_sec)")" "min:0.99"
row "fan-out ${RATE}/s p99 ms vs NATS" "$(fmt "$(field "$cmf" p99_ms)" 3)" "$(fmt "$(field "$natsl" p99_ms)" 3)" "max:0.50"
row "fan-out ${RATE}/s missing vs NATS" "$(field "$cmf" missing)" "$(field "$natsl" missing)"

# Saturated pub/sub: as many deliveries per second as each system gives, matched: the same
# number of publishers (PUBLISHERS), each with IN_FLIGHT messages outstanding (cloudmesh:
# posts in flight per poster, each acknowledged; NATS: PUBs written per flush, never
# acknowledged), 32-byte payloads, one subscriber. Posts enter at node 1, the subscriber
# sits on node 3.
run "cloudctl bench fanout saturated" "$BIN/cloudctl" --json bench fanout --rate 10000000 \
  --posters "$PUBLISHERS" --pipeline "$IN_FLIGHT" --value-size 32 --duration "${DURATION}s"
cms="$OUT"
row "pub/sub saturated deliveries/s vs NATS" "$(fmt "$(field "$cms" ops_per_sec)")" "$(fmt "$(field "$natst" ops_per_sec)")" "min:0.50"
row "pub/sub saturated missing vs NATS" "$(field "$cms" missing)" "$(field "$natst" missing)"

# ---------------------------------------------------------------------------------------
# Report

{
  printf '\ncloudmesh vs baselines — %s, commit %s, %s, %s CPUs, %s s per run, %s clients\n' \
    "$STAMP" "$COMMIT" "$(uname -m)" "$(nproc 2>/dev/null || echo '?')" "$DURATION" "$CLIENTS"
  printf '%-40s %12s %12s %7s  %s\n' "scenario" "cloudmesh" "baseline" "ratio" "target"
  for r in "${ROWS[@]}"; do printf '%s\n' "$r"; done
  p99="$(field "$cmf" p99_ms)"
  if [ -n "$p99" ]; then
    awk -v p="$p99" 'BEGIN {printf "budget: fan-out p99 < 5 ms at 10k/s: %.3f ms %s\n", p, (p < 5) ? "ok" : "MISSED"}'
  fi
  printf 'saturated pub/sub: %s publishers, %s messages outstanding each, 32-byte payloads (cloudmesh: acknowledged posts in flight; NATS: PUBs per flush, %s published/s)\n' \
    "$PUBLISHERS" "$IN_FLIGHT" "$(fmt "$(field "$natst" published_per_sec)")"
  printf 'ratio = cloudmesh / baseline (for ms rows lower is better)\n'
} | tee "$TABLE"
printf '\nraw JSON lines: %s\ntable: %s\n' "$RESULTS" "$TABLE"
if [ "$FAILED" -ne 0 ]; then
  echo "bench-compare: some runs failed (their figures are n/a); logs: $WORK/tools.log" >&2
  exit 1 # cleanup keeps the logs
fi
