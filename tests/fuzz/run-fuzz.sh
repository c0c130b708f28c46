#!/usr/bin/env bash
# run-fuzz.sh BUILD SECONDS HARNESS... - run each libFuzzer harness BUILD/fuzz/HARNESS
# for SECONDS (-max_total_time) from its seed corpus tests/fuzz/corpus/HARNESS.
# New inputs go to BUILD/corpus/HARNESS (not the committed seeds); a crash, leak
# or timeout is saved as tests/fuzz/crashes/HARNESS-<kind>-<sha1> (gitignored):
# fix it, then move it to tests/fuzz/regressions/HARNESS/ so every `make test` replays it.
# Prints `ok HARNESS: N runs in S s (R exec/s)` or `FAIL HARNESS: ...` per harness,
# then `N passed, M failed`; exits non-zero if any failed. Logs: BUILD/logs/HARNESS.log.
set -uo pipefail
build=$1; secs=$2; shift 2
export SPARROW_SHARED=${SPARROW_SHARED:-${SHARED:-../shared}}
mkdir -p tests/fuzz/crashes "$build/logs"
passed=0; failed=0
for h in "$@"; do
    case $h in                  # input size limits per format
        fuzz_gguf) max_len=16384 ;;
        fuzz_api) max_len=4096 ;;
        fuzz_http) max_len=8192 ;;
        fuzz_config) max_len=2048 ;;
        *) max_len=1024 ;;
    esac
    mkdir -p "$build/corpus/$h"
    log=$build/logs/$h.log
    "$build/fuzz/$h" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="tests/fuzz/crashes/$h-" \
        "$build/corpus/$h" "tests/fuzz/corpus/$h" >"$log" 2>&1
    rc=$?
    runs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}')
    t=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | awk '{print $5}')
    rate=$(grep -E '^stat::average_exec_per_sec:' "$log" | awk '{print $2}')
    if [ "$rc" -eq 0 ] && [ -n "$t" ]; then
        passed=$((passed + 1))
        echo "ok $h: ${runs:-?} runs in ${t} s (${rate:-?} exec/s), corpus $(ls "$build/corpus/$h" | wc -l) files"
    else
        failed=$((failed + 1))
        echo "FAIL $h: exit $rc after ${runs:-?} runs; log $log"
        grep -E 'ERROR: |SUMMARY: |property broken|Test unit written' "$log" | head -5 | sed 's/^/    /'
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
