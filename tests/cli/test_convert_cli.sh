#!/usr/bin/env bash
# test_convert_cli.sh - the offline verbs end to end on stories260K:
# 1. `sparrow quantize --type f16` of the f32 model gives llama.cpp's own
#    stories260K-f16.gguf byte for byte; bad --type and missing flags are
#    usage errors (exit 2).
# 2. `sparrow sparsify` writes a 2:4 model that `sparrow run` generates with,
#    and the same greedy text as its dense-with-zeros expansion
#    (`quantize --type f32`); 1x4 blocks and wanda (--calib) work end to end;
#    bad format strings, a --sparsity that disagrees with N:M, block without
#    --sparsity, wanda without --calib are usage errors (exit 2).
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
grep -q "2:4 (magnitude, f16 values): 30 tensors pruned, 5 kept dense (row length), sparsity 50.00%" "$tmp/s.err" \
    || bad "sparsify report: $(cat "$tmp/s.err")"
out=$("$bin" run -m "$tmp/s24.gguf" -p "Once upon a time" -n 16 --temp 0 2>"$tmp/r.err") || bad "run on 2:4 failed"
[ ${#out} -gt 20 ] || bad "run on 2:4 printed too little: $out"
"$bin" quantize -m "$tmp/s24.gguf" -o "$tmp/s24-dense.gguf" --type f32 2>/dev/null || bad "quantize of the 2:4 model failed"
dz=$("$bin" run -m "$tmp/s24-dense.gguf" -p "Once upon a time" -n 16 --temp 0 2>/dev/null) || bad "run on the expansion failed"
[ "$out" = "$dz" ] || bad "2:4 and its dense expansion generate differently: '$out' vs '$dz'"

# more formats, and wanda calibrated on the first half of the held-out text
head -c 20000 "$text" > "$tmp/calib.txt"
"$bin" sparsify -m "$models/stories260K-f32.gguf" -o "$tmp/b14.gguf" --format block --block 1x4 --sparsity 50% --quant q8 2>"$tmp/s.err" \
    || bad "sparsify 1x4 failed: $(cat "$tmp/s.err")"
grep -q "1x4:50% (magnitude, q8 values): 30 tensors pruned" "$tmp/s.err" || bad "sparsify 1x4: $(cat "$tmp/s.err")"
"$bin" sparsify -m "$models/stories260K-f32.gguf" -o "$tmp/w.gguf" --format 2:4 --method wanda --calib "$tmp/calib.txt" 2>"$tmp/s.err" \
    || bad "sparsify wanda failed: $(cat "$tmp/s.err")"
grep -q "calibrated on [0-9]* tokens" "$tmp/s.err" || bad "wanda did not report its calibration: $(cat "$tmp/s.err")"
grep -q "2:4 (wanda, f16 values): 30 tensors pruned" "$tmp/s.err" || bad "sparsify wanda: $(cat "$tmp/s.err")"
cmp -s "$tmp/w.gguf" "$tmp/s24.gguf" && bad "wanda wrote the magnitude model"
out=$("$bin" run -m "$tmp/w.gguf" -p "Once upon a time" -n 16 --temp 0 2>/dev/null) || bad "run on the wanda model failed"
"$bin" sparsify --help | grep -q "calibrate on different text" || bad "sparsify --help does not warn about calibration leakage"

usage() {   # usage WHAT ARGS...: sparsify with ARGS must exit 2 with a message
    local what=$1 rc=0; shift
    "$bin" sparsify -m "$models/stories260K-f32.gguf" -o "$tmp/x.gguf" "$@" 2>"$tmp/u.err" || rc=$?
    [ "$rc" -eq 2 ] && [ -s "$tmp/u.err" ] || bad "sparsify $what ($*): exit $rc, want 2 with a message"
}
usage "bad format" --format 2-4
usage "bad format" --format 5:4
usage "bad format" --format 2:17
usage "bad format" --format 8:3:8
usage "bad format" --format 1x3 --sparsity 0.5
usage "bad format" --format bogus
usage "sparsity mismatch" --format 2:4 --sparsity 0.75
usage "sparsity mismatch" --format 64:2:8 --sparsity 0.5
usage "bad sparsity" --format block --sparsity 1.5
usage "block without sparsity" --format block --block 1x16
usage "n:M without sparsity" --format n:8
usage "--block with N:M" --format 2:4 --block 1x4
usage "bad quant" --quant q5
usage "bad method" --method obs
usage "wanda without --calib" --method wanda
usage "--calib without wanda" --calib "$tmp/calib.txt"
rc=0; "$bin" sparsify -m "$models/stories260K-f32.gguf" -o "$tmp/x.gguf" --method wanda --calib "$tmp/nope.txt" 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || bad "wanda with a missing --calib file: exit $rc, want 1"
[ -e "$tmp/x.gguf" ] && bad "a failed sparsify left $tmp/x.gguf"

ppl() { "$bin" perplexity -m "$1" -f "$text" -c 256 --chunks 2 | sed -n 's/^Final estimate: PPL = \([0-9.]*\) .*/\1/p'; }
"$bin" perplexity -m "$models/stories260K-f32.gguf" -f "$text" -c 256 --chunks 2 > "$tmp/p.out" || bad "perplexity failed"
grep -q '^\[1\][0-9.]*,\[2\][0-9.]*,$' "$tmp/p.out" || bad "no running values: $(cat "$tmp/p.out")"
dense=$(ppl "$models/stories260K-f32.gguf"); sparse=$(ppl "$tmp/s24.gguf")
awk -v d="$dense" -v s="$sparse" 'BEGIN { exit !(d > 1 && d < 50 && s > d) }' || bad "ppl dense '$dense' sparse '$sparse'"
exit $fail
