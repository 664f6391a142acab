#!/usr/bin/env bash
# Where the CPU goes per operation: cloudmesh (the SDK's bench client and one cloudd) beside
# the bare QUIC ping-pong (its client and its server), same clients and pipelining depth, on
# loopback. For each process: CPU time per operation (user + system, all threads, from
# /proc/PID/stat) and thread switches per operation (voluntary + involuntary, summed over
# /proc/PID/task/*/status), sampled over the same window in the middle of each run.
# Everything shares this machine's cores, so throughput is total CPU per operation.
#
# Usage: scripts/bench-cpu.sh [--depth D] [--clients N] [--window SECONDS] [--rounds R] [--no-build]
#   --depth D      requests in flight per client (default 16)
#   --clients N    clients / connections (default 50)
#   --window S     seconds sampled per run (default 6; each run lasts S + 4 s)
#   --rounds R     alternating rounds (cloudmesh, ping-pong / ping-pong, cloudmesh), default 3
#   --no-build     use the binaries already in target/release
# Prints one line per process and run, then medians per process.
set -euo pipefail

DEPTH=16
CLIENTS=50
WINDOW=6
ROUNDS=3
BUILD=1
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
num() { case "$2" in ''|*[!0-9]*|0) echo "bench-cpu: $1 takes a whole number > 0" >&2; exit 2 ;; esac; }
while [ $# -gt 0 ]; do
  case "$1" in
    --depth) num "$1" "${2:-}"; DEPTH="$2"; shift 2 ;;
    --clients) num "$1" "${2:-}"; CLIENTS="$2"; shift 2 ;;
    --window) num "$1" "${2:-}"; WINDOW="$2"; shift 2 ;;
    --rounds) num "$1" "${2:-}"; ROUNDS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-cpu: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$BUILD" -eq 1 ]; then
  cargo build --release --bins --examples >&2
fi
BIN="$(pwd)/target/release"
PINGPONG="$BIN/examples/quic_pingpong"
for b in "$BIN/cloudd" "$BIN/cloudctl" "$PINGPONG"; do
  [ -x "$b" ] || { echo "bench-cpu: $b is missing (run without --no-build)" >&2; exit 1; }
done
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
RUN=$((WINDOW + 4))
TICK="$(getconf CLK_TCK)"

# CPU ticks (all threads) and thread switches of a process, "ticks switches".
sample() {
  local pid="$1" ticks sw
  ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat")"
  sw="$(cat /proc/"$pid"/task/*/status 2>/dev/null \
    | awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}')"
  echo "$ticks $sw"
}

# Waits until FILE has a line matching PATTERN (10 s at most).
wait_line() {
  local file="$1" pattern="$2" i
  for i in $(seq 1 100); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-cpu: timed out waiting for '$pattern' in $file" >&2
  cat "$file" >&2
  exit 1
}

# Runs CLIENT_CMD (in the background) against SERVER_PID, samples both over the window and
# prints "label process us_per_op switches_per_op ops_per_sec".
measure() {
  local label="$1" server="$2"; shift 2
  "$@" >"$WORK/client.json" 2>"$WORK/client.err" &
  local client=$!
  sleep 2
  local s0 c0 s1 c1
  s0="$(sample "$server")"; c0="$(sample "$client")"
  sleep "$WINDOW"
  s1="$(sample "$server")"; c1="$(sample "$client")"
  wait "$client" || { echo "bench-cpu: $label client failed" >&2; cat "$WORK/client.err" >&2; exit 1; }
  local ops
  ops="$(grep -o '"ops_per_sec":[0-9.e+]*' "$WORK/client.json" | cut -d: -f2)"
  [ -n "$ops" ] || { echo "bench-cpu: no ops_per_sec from $label" >&2; exit 1; }
  for side in client server; do
    local a b
    if [ "$side" = client ]; then a="$c0"; b="$c1"; else a="$s0"; b="$s1"; fi
    awk -v l="$label" -v s="$side" -v a="$a" -v b="$b" -v ops="$ops" -v w="$WINDOW" -v t="$TICK" 'BEGIN {
      split(a, x, " "); split(b, y, " "); n = ops * w
      printf "%-10s %-7s %8.2f %8.3f %10.0f\n", l, s, (y[1] - x[1]) / t * 1e6 / n, (y[2] - x[2]) / n, ops }'
  done
}

# cloudd: one node, no rate limit, its own data dir and admin socket.
mkdir -p "$WORK/node"
"$BIN/cloudd" --name cpu --listen 127.0.0.1:0 --data-dir "$WORK/node" \
  --admin-socket "$WORK/node/admin.sock" --rate-limit 0 >"$WORK/cloudd.out" 2>"$WORK/cloudd.err" &
NODE=$!
PIDS+=("$NODE")
# Its "listening on ADDR; ... --pin FP" line goes to stderr.
wait_line "$WORK/cloudd.err" "listening on"
NODE_ADDR="$(sed -n 's/.*listening on \([^;]*\);.*/\1/p' "$WORK/cloudd.err" | head -1)"
NODE_PIN="$(sed -n 's/.*(clients: --pin \([0-9a-f]*\)).*/\1/p' "$WORK/cloudd.err" | head -1)"

"$PINGPONG" server --listen 127.0.0.1:0 --exit-after 1h >"$WORK/pingpong.out" 2>"$WORK/pingpong.log" &
PP=$!
PIDS+=("$PP")
wait_line "$WORK/pingpong.out" "listening"
read -r _ PP_ADDR _ PP_PIN <"$WORK/pingpong.out"

echo "# $CLIENTS clients x $DEPTH in flight, ${WINDOW} s sampled per run; CPU us/op and thread switches/op per process" >&2
printf '%-10s %-7s %8s %8s %10s\n' side process us/op sw/op ops/s
cm() {
  measure cloudmesh "$NODE" "$BIN/cloudctl" --socket "$WORK/node/admin.sock" --json bench throughput \
    --server "$NODE_ADDR" --pin "$NODE_PIN" --clients "$CLIENTS" --pipeline "$DEPTH" --duration "${RUN}s"
}
pp() {
  measure quic "$PP" "$PINGPONG" client --server "$PP_ADDR" --pin "$PP_PIN" \
    --clients "$CLIENTS" --pipeline "$DEPTH" --duration "${RUN}s" --json
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then cm; pp; else pp; cm; fi
done | tee "$WORK/lines"
echo "# medians" >&2
sort -k1,2 "$WORK/lines" | awk '
  { k = $1 " " $2; n[k]++; us[k, n[k]] = $3; sw[k, n[k]] = $4; op[k, n[k]] = $5 }
  function med(a, k, c,   i, j, t, v) {
    for (i = 1; i <= c; i++) v[i] = a[k, i]
    for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
  }
  END { for (k in n) printf "median %-18s %8.2f %8.3f %10.0f\n", k, med(us, k, n[k]), med(sw, k, n[k]), med(op, k, n[k]) }' | sort
