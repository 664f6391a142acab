#!/usr/bin/env bash
# Fuzzes cloudmesh's decoders with cargo fuzz (libFuzzer) on the stable toolchain.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 60 seconds, every target, one at a time
#
# Each target starts from its checked-in corpus (fuzz/corpus/TARGET, replayed first, so a
# regression fails at once) and writes what it finds to fuzz/work/TARGET (not committed); a
# crash is saved under fuzz/artifacts/TARGET/ and makes this script fail. To keep what a run
# found: cargo fuzz run -s none TARGET fuzz/corpus/TARGET fuzz/work/TARGET -- -merge=1
#
# `-s none`: without it cargo fuzz builds with AddressSanitizer, which needs the nightly
# compiler. Nothing is lost for the crate's own code, which forbids `unsafe`; libFuzzer's
# coverage instrumentation, `--cfg fuzzing`, debug assertions and overflow checks all work
# on stable.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# Longest input per target: the stream decoders need room to reach their frame limits and
# memory bounds (limits of 40 and 1000 bytes are among those a check picks); DNS answers
# over TCP may be long; key files, zone maps and tickets are short.
max_len() {
    case "$1" in
        client_frames | server_frames | peer_frames | admin_frames | auth_exchange) echo 32768 ;;
        dns_message) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

cargo fuzz build -s none

passed=0
failed=0
for target in "${targets[@]}"; do
    mkdir -p "work/$target"
    log="work/$target.log"
    echo "== fuzz $target (${seconds}s)"
    status=0
    cargo fuzz run -s none "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb))' "$log" || true
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        # The contract that broke (the panic message), then how libFuzzer reported it.
        grep -A3 -E "panicked at|==[0-9]+== ERROR" "$log" >&2 || true
        grep -v -E '^ +([0-9]+: |at )' "$log" | tail -n 25 >&2
        echo "fuzz/$target FAILED (exit $status); the input is under fuzz/artifacts/$target/" >&2
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
