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
grep -v '"meta"' docs/data/bench-sparrow.jsonl | head -4 > "$tmp/small.jsonl"
bash scripts/plot-bench.sh -o "$tmp/bench1.png" "$tmp/small.jsonl" > "$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "plot-bench.sh on one small file failed"; }
png "$tmp/bench1.png"

bash scripts/plot-serving.sh -o "$tmp/serving.png" docs/data/serving-sparrow.jsonl docs/data/serving-llamaserver.jsonl \
    > "$tmp/log" 2>&1 || { cat "$tmp/log"; bad "plot-serving.sh failed"; }
png "$tmp/serving.png"

bash scripts/plot-fairness.sh -o "$tmp/fairness.png" docs/data/fairness.json > "$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "plot-fairness.sh failed"; }
png "$tmp/fairness.png"
echo '{"runs": {"fcfs": {}}}' > "$tmp/nosamples.json"
bash scripts/plot-fairness.sh -o "$tmp/bad2.png" "$tmp/nosamples.json" > /dev/null 2>&1 \
    && bad "plot-fairness.sh accepted results without service samples"

# Bad input is an error, not an empty picture.
echo 'not json' > "$tmp/bad.jsonl"
bash scripts/plot-bench.sh -o "$tmp/bad.png" "$tmp/bad.jsonl" > /dev/null 2>&1 && bad "plot-bench.sh accepted a non-JSON file"

[ "$fail" -eq 0 ] && echo "ok: plots"
exit "$fail"
