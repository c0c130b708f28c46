#!/usr/bin/env bash
# serve-bench.sh - start `sparrow serve` with llama-server's anchor flags on a free
# loopback port, run the serving benchmark of ../shared/anchors/llama.cpp.md
# (sections 2 and 3), stop the server, print the result tables.
#
# usage: scripts/serve-bench.sh [options]
#   --model NAME          model in $SHARED/models, without .gguf (default synth15M-q8_0)
#   --loadgen             drive with $SHARED/anchors/loadgen.py (the tool llama.cpp was
#                         measured with; use it for the README table) instead of
#                         scripts/bench-serving.py (adds ITL, cached tokens)
#   --concurrency LIST    uniform levels (default 1,4,16)
#   --requests N          requests per level (default 64)
#   --prompt-tokens N     uniform prompt words (default 64)
#   --max-tokens N        (default 128)
#   --prefix-clients N    prefix workload clients (default 8)
#   --prefix-tokens N     (default 512)
#   --suffix-tokens N     (default 32)
#   --control             also run the no-shared-prefix control (uniform, PREFIX+SUFFIX words)
#   --no-uniform          skip the uniform levels
#   --no-prefix           skip the prefix workload
#   --port N              port (default: a free one)
#   --json-out FILE       append the JSON records of every level to FILE
#   -h, --help
# env: SHARED (default ../shared), SPARROW (default ./sparrow)
#
# Uniform: server with -c 4096 -np 8; prefix: a fresh server with -c 8192 -np 8
# (as llama.cpp was run). Both also get --cont-batching -t 2 -tb 2 --no-webui.
# Bounded: health wait 60 s, per-request timeout 600 s, each level 1800 s.
set -euo pipefail

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "serve-bench: $*" >&2; exit 2; }

SHARED=${SHARED:-../shared}
SPARROW=${SPARROW:-./sparrow}
MODEL=synth15M-q8_0
USE_LOADGEN=0
CONC=1,4,16
REQS=64
PROMPT=64
MAXTOK=128
PCLIENTS=8
PREFIX=512
SUFFIX=32
CONTROL=0
UNIFORM=1
DOPREFIX=1
PORT=
JSON_OUT=

need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case $1 in
        --model) need "$@"; MODEL=$2; shift 2 ;;
        --loadgen) USE_LOADGEN=1; shift ;;
        --concurrency) need "$@"; CONC=$2; shift 2 ;;
        --requests) need "$@"; REQS=$2; shift 2 ;;
        --prompt-tokens) need "$@"; PROMPT=$2; shift 2 ;;
        --max-tokens) need "$@"; MAXTOK=$2; shift 2 ;;
        --prefix-clients) need "$@"; PCLIENTS=$2; shift 2 ;;
        --prefix-tokens) need "$@"; PREFIX=$2; shift 2 ;;
        --suffix-tokens) need "$@"; SUFFIX=$2; shift 2 ;;
        --control) CONTROL=1; shift ;;
        --no-uniform) UNIFORM=0; shift ;;
        --no-prefix) DOPREFIX=0; shift ;;
        --port) need "$@"; PORT=$2; shift 2 ;;
        --json-out) need "$@"; JSON_OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "serve-bench: unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
done
for v in REQS PROMPT MAXTOK PCLIENTS PREFIX SUFFIX; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[[ $CONC =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--concurrency must look like 1,4,16"
[ -z "$PORT" ] || [[ $PORT =~ ^[1-9][0-9]*$ ]] || die "--port must be a number"
[ -x "$SPARROW" ] || die "$SPARROW not found or not executable (run make)"
MFILE=$SHARED/models/$MODEL.gguf
[ -f "$MFILE" ] || die "$MFILE not found (set SHARED or --model)"
here=$(cd "$(dirname "$0")" && pwd)
if [ "$USE_LOADGEN" -eq 1 ]; then
    CLIENT=$SHARED/anchors/loadgen.py
    [ -f "$CLIENT" ] || die "$CLIENT not found"
    TOOL=loadgen.py
else
    CLIENT=$here/bench-serving.py
    TOOL=bench-serving.py
fi
[ -n "$PORT" ] || PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

tmp=$(mktemp -d)
SRV_PID=
stop_server() {
    [ -n "$SRV_PID" ] || return 0
    if kill -0 "$SRV_PID" 2>/dev/null; then
        kill -TERM "$SRV_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$SRV_PID" 2>/dev/null && { echo "serve-bench: server did not exit in 10 s after SIGTERM, killing" >&2; kill -KILL "$SRV_PID" 2>/dev/null || true; }
    fi
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

start_server() {  # $1 = ctx size
    "$SPARROW" serve -m "$MFILE" --host 127.0.0.1 --port "$PORT" -c "$1" -np 8 \
        --cont-batching -t 2 -tb 2 --no-webui >"$tmp/server.log" 2>&1 &
    SRV_PID=$!
    for _ in $(seq 1 600); do
        if ! kill -0 "$SRV_PID" 2>/dev/null; then
            echo "serve-bench: server exited during start-up:" >&2; tail -n 20 "$tmp/server.log" >&2; SRV_PID=; exit 1
        fi
        curl -sf --max-time 1 "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "serve-bench: /health not ok after 60 s" >&2; tail -n 20 "$tmp/server.log" >&2; exit 1
}

run_client() {  # $1 = label, rest = client args
    local label=$1; shift
    local jo=()
    [ -z "$JSON_OUT" ] || jo=(--json-out "$JSON_OUT")
    # progress goes to stderr as it comes; the collected tables go to stdout at the end
    echo "== $label" | tee -a "$tmp/report" >&2
    python3 "$CLIENT" --base-url "http://127.0.0.1:$PORT" --pid "$SRV_PID" --label "$MODEL $label" \
        "${jo[@]}" "$@" 2>"$tmp/client.err" | tee -a "$tmp/report" >&2 ||
        { echo "serve-bench: $TOOL failed" >&2; tee -a "$tmp/report" <"$tmp/client.err" >&2; return 1; }
    [ ! -s "$tmp/client.err" ] || tee -a "$tmp/report" <"$tmp/client.err" >&2
}

rc=0
echo "serve-bench: $MODEL via $TOOL on 127.0.0.1:$PORT" >&2
if [ "$UNIFORM" -eq 1 ]; then
    start_server 4096
    run_client "uniform, -c 4096 -np 8" --workload uniform --concurrency "$CONC" --requests "$REQS" \
        --prompt-tokens "$PROMPT" --max-tokens "$MAXTOK" || rc=1
    stop_server
fi
if [ "$DOPREFIX" -eq 1 ]; then
    start_server 8192
    run_client "shared prefix, -c 8192 -np 8" --workload prefix --concurrency "$PCLIENTS" --requests "$REQS" \
        --prefix-tokens "$PREFIX" --suffix-tokens "$SUFFIX" --max-tokens "$MAXTOK" || rc=1
    if [ "$CONTROL" -eq 1 ]; then
        run_client "control (no shared prefix), -c 8192 -np 8" --workload uniform --concurrency "$PCLIENTS" \
            --requests "$REQS" --prompt-tokens $((PREFIX + SUFFIX)) --max-tokens "$MAXTOK" || rc=1
    fi
    stop_server
fi

echo
echo "### serve-bench: $MODEL, $TOOL, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo
cat "$tmp/report" 2>/dev/null || true
# Lines logged at priority err or worse (<0>..<3>, sd-daemon prefixes), and
# sanitizer or assertion reports; not a bare "error" (the build flags in the
# startup line contain -Werror).
bad='^<[0-3]>|Sanitizer|Assertion'
if grep -qE "$bad" "$tmp/server.log" 2>/dev/null; then
    echo
    echo "server log (last server run) mentions errors:"
    grep -E "$bad" "$tmp/server.log" | tail -n 5
fi
exit "$rc"
