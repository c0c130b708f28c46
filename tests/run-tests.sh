#!/usr/bin/env bash
# run-tests.sh DIR - run every unit test binary in DIR, the shell tests in
# tests/cli/ and the python tests in tests/integration/, and print one closing
# line `N passed, M failed` over all of them.
# Each binary prints its own `N passed, M failed`; a binary that crashes or
# prints no such line counts as one failure.
set -u
dir=$1
passed=0; failed=0
# count NAME OUTPUT RC SHOW: add a test program's closing `N passed, M failed`
# to the totals (lines matching SHOW are echoed); no such line, or a non-zero
# exit with no failure counted, is one failure.
count() {
    local name=$1 out=$2 rc=$3 show=$4 line p f
    printf '%s\n' "$out" | grep -E "$show" || true
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -20
        echo "   $name: no result line (exit $rc)"; failed=$((failed + 1)); return
    fi
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed}
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    echo "   $line"
    passed=$((passed + p)); failed=$((failed + f))
}

for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    out=$("$t" 2>&1); rc=$?
    count "$(basename "$t")" "$out" "$rc" '^(FAIL|  FAIL)'
done
# The kernel-sensitive tests again on the AVX2 kernels (what CPUs without
# AVX-512 run): golden logits and batch invariance must hold there too.
for t in test_golden test_forward test_kernels; do
    [ -x "$dir/$t" ] || continue
    echo "== $t (SPARROW_KERNELS=avx2)"
    out=$(SPARROW_KERNELS=avx2 "$dir/$t" 2>&1); rc=$?
    count "$t-avx2" "$out" "$rc" '^(FAIL|  FAIL)'
done
for t in tests/cli/test_*.sh; do
    [ -f "$t" ] || continue
    echo "== $(basename "$t")"
    if out=$(bash "$t" 2>&1); then passed=$((passed + 1)); echo "   ok"
    else failed=$((failed + 1)); printf '%s\n' "$out" | tail -20; echo "   FAIL"; fi
done
# Integration tests: python3 scripts that start the daemon of this build
# ($BIN from the Makefile, else DIR/../sparrow) and print `N passed, M failed`.
bin=${BIN:-$(dirname "$dir")/sparrow}
for t in tests/integration/test_*.py; do
    [ -f "$t" ] || continue
    echo "== $(basename "$t")"
    out=$(SPARROW_BIN="$bin" SPARROW_SHARED="${SHARED:-../shared}" python3 "$t" 2>&1); rc=$?
    count "$(basename "$t")" "$out" "$rc" '^(FAIL|    )'
done
# Short fuzzing (15 s per harness, clang + libFuzzer, ASan + UBSan) when
# SPARROW_FUZZ_CI=1: each harness counts as one test.
if [ "${SPARROW_FUZZ_CI:-0}" = 1 ]; then
    echo "== fuzz-ci"
    out=$(make --no-print-directory fuzz-ci SHARED="${SHARED:-../shared}" 2>&1)
    printf '%s\n' "$out" | grep -E '^(ok|FAIL|    )' || true
    fp=$(printf '%s\n' "$out" | grep -c '^ok fuzz_'); ff=$(printf '%s\n' "$out" | grep -c '^FAIL fuzz_')
    [ "$fp" -eq 0 ] && [ "$ff" -eq 0 ] && { printf '%s\n' "$out" | tail -20; ff=1; }
    echo "   $fp passed, $ff failed"
    passed=$((passed + fp)); failed=$((failed + ff))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
