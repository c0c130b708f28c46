#!/usr/bin/env bash
# test_plots.sh - every plot script turns the checked-in sample results
# (docs/data/) into a PNG. Usage: bash tests/cli/test_plots.sh (from the repo
# root). Writes into a temp dir only. Needs gnuplot-nox and python3.
set -euo pipefail
fail=0
bad() { echo "FAIL: $*"; fail=1; }
command -v gnuplot >/dev/null || { echo "FAIL: gnuplot not found (apt-get install gnuplot-nox)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# png FILE: exists, has the PNG signature, is not a blank few-hundred-byte image.
png() {
    [ -f "$1" ] || { bad "$1 not written"; return; }
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || bad "$1 is not a PNG"
    [ "$(stat -c %s "$1")" -gt 10000 ] || bad "$1 is suspiciously small"
}

bash scripts/plot-bench.sh -o "$tmp/bench.png" docs/data/bench-sparrow.jsonl docs/data/bench-llamacpp.jsonl \
    > "$tmp/log" 2>&1 || { cat "$tmp/log"; bad "plot-bench.sh failed"; }
png "$tmp/bench.png"
# Without the llama.cpp file, and from a file with no meta line.
awk '!/"meta"/ && n < 4 { print; n++ }' docs/data/bench-sparrow.jsonl > "$tmp/small.jsonl"
bash scripts/plot-bench.sh -o "$tmp/bench1.png" "$tmp/small.jsonl" > "$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "plot-bench.sh on one small file failed"; }
png "$tmp/bench1.png"

bash scripts/plot-serving.sh -o "$tmp/serving.png" docs/data/serving-sparrow.jsonl docs/data/serving-llamaserver.jsonl \
    > "$tmp/log" 2>&1 || { cat "$tmp/log"; bad "plot-serving.sh failed"; }
png "$tmp/serving.png"

bash scripts/plot-prefix.sh -o "$tmp/prefix.png" docs/data/serving-prefix-sparrow.jsonl docs/data/serving-prefix-llamaserver.jsonl \
    > "$tmp/log" 2>&1 || { cat "$tmp/log"; bad "plot-prefix.sh failed"; }
png "$tmp/prefix.png"
# Small sample: two levels, no meta line, plus a uniform record that must be skipped.
{ awk '/"workload": "prefix"/ && n < 2 { print; n++ }' docs/data/serving-prefix-sparrow.jsonl
  awk '/"workload": "uniform"/ && n < 1 { print; n++ }' docs/data/serving-sparrow.jsonl; } > "$tmp/prefix-small.jsonl"
bash scripts/plot-prefix.sh -o "$tmp/prefix1.png" "$tmp/prefix-small.jsonl" > "$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "plot-prefix.sh on one small file failed"; }
png "$tmp/prefix1.png"
# Rejected: no shared-prefix records, non-JSON, a missing TTFT, a duplicated level.
bash scripts/plot-prefix.sh -o "$tmp/bad3.png" docs/data/serving-sparrow.jsonl > /dev/null 2>&1 \
    && bad "plot-prefix.sh accepted a file without shared-prefix records"
{ head -1 "$tmp/prefix-small.jsonl"; echo 'not json'; } > "$tmp/prefix-bad1.jsonl"
bash scripts/plot-prefix.sh -o "$tmp/bad4.png" "$tmp/prefix-bad1.jsonl" > /dev/null 2>&1 \
    && bad "plot-prefix.sh accepted a non-JSON file"
echo '{"workload": "prefix", "concurrency": 8, "output_tok_s": 100.0, "ttft_p50_ms": 10.0}' > "$tmp/prefix-bad2.jsonl"
bash scripts/plot-prefix.sh -o "$tmp/bad5.png" "$tmp/prefix-bad2.jsonl" > /dev/null 2>&1 \
    && bad "plot-prefix.sh accepted a record without ttft_p99_ms"
{ head -1 "$tmp/prefix-small.jsonl"; head -1 "$tmp/prefix-small.jsonl"; } > "$tmp/prefix-bad3.jsonl"
bash scripts/plot-prefix.sh -o "$tmp/bad6.png" "$tmp/prefix-bad3.jsonl" > /dev/null 2>&1 \
    && bad "plot-prefix.sh accepted two records for the same level and series"
[ -e "$tmp/bad3.png" ] || [ -e "$tmp/bad4.png" ] || [ -e "$tmp/bad5.png" ] || [ -e "$tmp/bad6.png" ] \
    && bad "plot-prefix.sh wrote a PNG for bad input"

bash scripts/plot-fairness.sh -o "$tmp/fairness.png" docs/data/fairness.json > "$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "plot-fairness.sh failed"; }
png "$tmp/fairness.png"
echo '{"runs": {"fcfs": {}}}' > "$tmp/nosamples.json"
bash scripts/plot-fairness.sh -o "$tmp/bad2.png" "$tmp/nosamples.json" > /dev/null 2>&1 \
    && bad "plot-fairness.sh accepted results without service samples"

bash scripts/plot-sparse.sh -o "$tmp/sparse.png" docs/data/sparse.jsonl > "$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "plot-sparse.sh failed"; }
png "$tmp/sparse.png"
# A small sample without a meta line: one dense row (skipped) and two sparse
# ones. (awk, not `grep | head`: under pipefail an early-closing head can
# SIGPIPE the writer and fail the test at random.)
awk '!/"meta"/ && /"dense"/ && !d { print; d = 1 } !/"meta"/ && !/"dense"/ && n < 2 { print; n++ }' \
    docs/data/sparse.jsonl > "$tmp/sparse-small.jsonl"
bash scripts/plot-sparse.sh -o "$tmp/sparse1.png" "$tmp/sparse-small.jsonl" > "$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "plot-sparse.sh on a small sample failed"; }
png "$tmp/sparse1.png"
grep -m1 '"dense"' docs/data/sparse.jsonl > "$tmp/sparse-dense-only.jsonl"
bash scripts/plot-sparse.sh -o "$tmp/bad7.png" "$tmp/sparse-dense-only.jsonl" > /dev/null 2>&1 \
    && bad "plot-sparse.sh accepted results without sparse records"
echo '{"format": "2:4", "values": "f16", "sparsity": 0.5}' > "$tmp/sparse-bad.jsonl"
bash scripts/plot-sparse.sh -o "$tmp/bad8.png" "$tmp/sparse-bad.jsonl" > /dev/null 2>&1 \
    && bad "plot-sparse.sh accepted a record without speeds"
[ -e "$tmp/bad7.png" ] || [ -e "$tmp/bad8.png" ] && bad "plot-sparse.sh wrote a PNG for bad input"

# Usage errors (scripts/plot-common.sh): no input, -o without a file, a
# missing file; usage goes to stderr, nothing is written.
for p in scripts/plot-*.sh; do
    [ "$p" = scripts/plot-common.sh ] && continue
    rc=0; bash "$p" > "$tmp/out" 2> "$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] && grep -q '^Usage:' "$tmp/err" && [ ! -s "$tmp/out" ] || bad "$p without input: exit $rc, usage not on stderr"
    rc=0; bash "$p" -o > /dev/null 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || bad "$p -o without a file: exit $rc"
    rc=0; bash "$p" -o "$tmp/missing.png" "$tmp/no-such-file.jsonl" > /dev/null 2>&1 || rc=$?
    [ "$rc" -eq 1 ] && [ ! -e "$tmp/missing.png" ] || bad "$p on a missing file: exit $rc"
done

# Bad input is an error, not an empty picture.
echo 'not json' > "$tmp/bad.jsonl"
bash scripts/plot-bench.sh -o "$tmp/bad.png" "$tmp/bad.jsonl" > /dev/null 2>&1 && bad "plot-bench.sh accepted a non-JSON file"

[ "$fail" -eq 0 ] && echo "ok: plots"
exit "$fail"
