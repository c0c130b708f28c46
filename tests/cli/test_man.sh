#!/usr/bin/env bash
# test_man.sh - the committed man pages (docs/man/) are what scripts/gen-man.sh
# makes from the current binary's --help, so the docs cannot drift from the
# code; they render with man(1) without groff warnings; every verb of
# `sparrow --help` and every setting of `sparrow serve --help` is in them.
# Usage: bash tests/cli/test_man.sh   (from the repo root; BIN= the binary,
# default ./sparrow). Fix a failure with `make man` and commit docs/man/.
# Needs the Debian packages man-db and groff-base.
set -euo pipefail
bin=${BIN:-./sparrow}
fail=0
bad() { echo "FAIL: $*"; fail=1; }
[ -x "$bin" ] || { echo "FAIL: $bin not built"; exit 1; }
command -v man >/dev/null || { echo "FAIL: man not found (apt-get install man-db groff-base)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bash scripts/gen-man.sh "$bin" "$tmp" >/dev/null
for p in sparrow.1 sparrow.conf.5; do
    if [ ! -f "docs/man/$p" ]; then bad "docs/man/$p missing (run make man)"; continue; fi
    if ! diff -u "docs/man/$p" "$tmp/$p" > "$tmp/diff"; then
        head -30 "$tmp/diff"
        bad "docs/man/$p is stale: the binary's --help changed (run make man and commit docs/man/)"
    fi
    # Render the committed page; groff warnings (bad requests, escapes) fail.
    if ! MANWIDTH=80 man --warnings -l "docs/man/$p" > "$tmp/$p.txt" 2> "$tmp/$p.err"; then
        bad "man -l docs/man/$p failed"
    fi
    [ -s "$tmp/$p.err" ] && { cat "$tmp/$p.err"; bad "docs/man/$p: groff warnings"; }
    grep -q '^NAME' "$tmp/$p.txt" || bad "docs/man/$p: no NAME section in the rendered page"
done

# Coverage: every verb has its section, every setting its entry.
for v in $("$bin" --help | awk '/^verbs:/ {on = 1; next} on && /^  [a-z]/ {print $1}'); do
    grep -q "^   sparrow $v\$" "$tmp/sparrow.1.txt" || bad "sparrow.1: no section for verb $v"
done
n=0
for env in $("$bin" serve --help | sed -n 's/.*; env \(SPARROW_[A-Z0-9_]*\)\]$/\1/p'); do
    key=$(printf '%s' "${env#SPARROW_}" | tr 'A-Z' 'a-z')
    grep -q "^       $key = " "$tmp/sparrow.conf.5.txt" || bad "sparrow.conf.5: no entry for $key"
    n=$((n + 1))
done
[ "$n" -ge 20 ] || bad "only $n settings found in sparrow serve --help (parser broken?)"
# Every key of the shipped example config is documented.
for key in $(sed -n 's/^#\([a-z_]*\) = .*/\1/p' config/sparrow.conf); do
    grep -q "^       $key = " "$tmp/sparrow.conf.5.txt" || bad "sparrow.conf.5: no entry for $key of config/sparrow.conf"
done

[ "$fail" -eq 0 ] && echo "ok: man pages ($n settings)"
exit "$fail"
