#!/usr/bin/env bash
# test_convert_cli.sh - the offline verbs end to end on stories260K:
# 1. `sparrow quantize --type f16` of the f32 model gives llama.cpp's own
#    stories260K-f16.gguf byte for byte; bad --type and missing flags are
#    usage errors (exit 2).
# 2. `sparrow sparsify` writes a 2:4 model that `sparrow run` generates with.
# 3. `sparrow perplexity --chunks 2` prints the running values and a finite
#    final estimate; the 2:4 model scores worse than the dense one.
# Usage: bash tests/cli/test_convert_cli.sh (BIN=, SHARED= as the other tests)
set -euo pipefail
bin=${BIN:-./sparrow}
shared=${SHARED:-../shared}
models=$shared/models
text=$shared/testdata/text/stories-heldout.txt
fail=0
bad() { echo "FAIL: $*"; fail=1; }
[ -x "$bin" ] || { echo "FAIL: $bin not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" quantize -m "$models/stories260K-f32.gguf" -o "$tmp/f16.gguf" --type f16 2>"$tmp/q.err" || bad "quantize failed: $(cat "$tmp/q.err")"
cmp -s "$tmp/f16.gguf" "$models/stories260K-f16.gguf" || bad "quantize f16 differs from llama.cpp's stories260K-f16.gguf"
rc=0; "$bin" quantize -m "$models/stories260K-f32.gguf" -o "$tmp/x.gguf" --type q3_k 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || bad "unknown --type exit $rc, want 2"
rc=0; "$bin" sparsify -m "$models/stories260K-f32.gguf" 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || bad "sparsify without -o exit $rc, want 2"

"$bin" sparsify -m "$models/stories260K-f32.gguf" -o "$tmp/s24.gguf" 2>"$tmp/s.err" || bad "sparsify failed: $(cat "$tmp/s.err")"
grep -q "30 tensors converted" "$tmp/s.err" || bad "sparsify: $(cat "$tmp/s.err")"
out=$("$bin" run -m "$tmp/s24.gguf" -p "Once upon a time" -n 16 --temp 0 2>"$tmp/r.err") || bad "run on 2:4 failed"
grep -q "s24_f16" "$tmp/r.err" || bad "run did not report the s24_f16 model: $(cat "$tmp/r.err")"
[ ${#out} -gt 20 ] || bad "run on 2:4 printed too little: $out"

ppl() { "$bin" perplexity -m "$1" -f "$text" -c 256 --chunks 2 | sed -n 's/^Final estimate: PPL = \([0-9.]*\) .*/\1/p'; }
"$bin" perplexity -m "$models/stories260K-f32.gguf" -f "$text" -c 256 --chunks 2 > "$tmp/p.out" || bad "perplexity failed"
grep -q '^\[1\][0-9.]*,\[2\][0-9.]*,$' "$tmp/p.out" || bad "no running values: $(cat "$tmp/p.out")"
dense=$(ppl "$models/stories260K-f32.gguf"); sparse=$(ppl "$tmp/s24.gguf")
awk -v d="$dense" -v s="$sparse" 'BEGIN { exit !(d > 1 && d < 50 && s > d) }' || bad "ppl dense '$dense' sparse '$sparse'"
exit $fail
