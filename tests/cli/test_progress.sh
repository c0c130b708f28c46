#!/usr/bin/env bash
# test_progress.sh - long CLI work shows progress on stderr, never on stdout.
# Usage: bash tests/cli/test_progress.sh   (from the repo root; BIN= the
# binary, default ./sparrow; SHARED= the reference data, default ../shared)
# 1. Under a pseudo-terminal (script(1)) `sparrow bench` rewrites one progress
#    line in place: "\r", the test name, a rate in tok/s, the ETA; stdout
#    (redirected to a file inside the terminal session) holds no progress.
# 2. Without a terminal stdout holds only the result lines, stderr no "\r";
#    with a short interval the plain periodic lines appear on stderr.
# Needs util-linux (script).
set -euo pipefail
bin=${BIN:-./sparrow}
model=${SHARED:-../shared}/models/stories260K-f32.gguf
fail=0
bad() { echo "FAIL: $*"; fail=1; }
[ -x "$bin" ] || { echo "FAIL: $bin not built"; exit 1; }
[ -f "$model" ] || { echo "FAIL: $model missing"; exit 1; }
command -v script >/dev/null || { echo "FAIL: script not found (apt-get install util-linux)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmd="$bin bench -m $model -p 64 -n 16 -r 3"
# Result lines of `sparrow bench`: the bandwidth line, blank, the table.
is_result='^(memory read bandwidth .* t/s|\|.*\||)$'

# 1. A terminal on stderr.
env -u SPARROW_PROGRESS script -qfec "$cmd > $tmp/tty.out" /dev/null > "$tmp/tty.err" </dev/null \
    || { cat "$tmp/tty.err"; bad "bench under script failed"; }
grep -q $'\r' "$tmp/tty.err" || bad "terminal: no carriage return (in-place progress) on stderr"
grep -aqE $'\r''pp64: +[0-9]+% [0-9]+/192 tok, [0-9.]+ tok/s' "$tmp/tty.err" \
    || { cat -A "$tmp/tty.err" | head -5; bad "terminal: no 'pp64: N% done/192 tok, R tok/s' progress line"; }
grep -aqE $'\r''tg16: .* tok/s' "$tmp/tty.err" || bad "terminal: no progress line for tg16"
grep -q $'\r' "$tmp/tty.out" && bad "terminal: progress leaked to stdout"
grep -vqE "$is_result" "$tmp/tty.out" && { cat "$tmp/tty.out"; bad "terminal: stdout holds more than results"; }
[ "$(grep -c '^| stories260K' "$tmp/tty.out")" -eq 2 ] || bad "terminal: stdout does not hold the 2 result rows"

# 2. No terminal: stdout only results, stderr no in-place line.
env -u SPARROW_PROGRESS $cmd > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err"; bad "bench failed"; }
if grep -vE "$is_result" "$tmp/out" > "$tmp/extra"; then cat "$tmp/extra"; bad "no terminal: stdout holds more than results"; fi
[ "$(grep -c '^| stories260K' "$tmp/out")" -eq 2 ] || bad "no terminal: stdout does not hold the 2 result rows"
grep -q $'\r' "$tmp/err" && bad "no terminal: carriage return on stderr"
# Plain periodic lines (interval shortened so this short run shows them).
env -u SPARROW_PROGRESS SPARROW_PROGRESS_INTERVAL_S=0.000001 $cmd > "$tmp/out2" 2> "$tmp/err2" || bad "bench failed"
grep -qE '^sparrow: pp64: +[0-9]+% [0-9]+/192 tok, [0-9.]+ tok/s' "$tmp/err2" \
    || { cat "$tmp/err2"; bad "no terminal: no plain progress line on stderr"; }
cmp -s <(grep -v '^memory' "$tmp/out2" | sed 's/| [0-9.]* ± [0-9.]* |$//') \
       <(grep -v '^memory' "$tmp/out" | sed 's/| [0-9.]* ± [0-9.]* |$//') \
    || bad "no terminal: stdout changed when progress lines were printed"

[ "$fail" -eq 0 ] && echo "ok: progress"
exit "$fail"
