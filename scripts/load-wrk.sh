#!/usr/bin/env bash
# load-wrk.sh - wrk (Debian package wrk) posting non-streaming /v1/completions
# requests for a bounded duration, with scripts/wrk-completions.lua.
#
# usage: scripts/load-wrk.sh [-c CONNECTIONS] [-t THREADS] [-d SECONDS] [-m MAX_TOKENS]
#                            [-u BASE_URL] [-h]
#   -c  open connections (keep-alive)  (env CONNECTIONS, default 4)
#   -t  wrk threads                    (env THREADS,     default 1)
#   -d  duration in seconds, 1..600    (env DURATION,    default 5)
#   -m  max_tokens per request         (env MAX_TOKENS,  default 8)
#   -u  base URL, loopback only        (env BASE_URL,    default http://127.0.0.1:8080)
#
# Prints wrk's summary (latency, Requests/sec) plus the Lua script's count of
# non-200 responses. Exits non-zero if any response was not a 200 completion.
# Bounded: wrk -d DURATION, per-request timeout 60 s.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

CONNECTIONS=${CONNECTIONS:-4}
THREADS=${THREADS:-1}
DURATION=${DURATION:-5}
MAX_TOKENS=${MAX_TOKENS:-8}
BASE_URL=${BASE_URL:-http://127.0.0.1:8080}

while getopts "c:t:d:m:u:h" opt; do
    case $opt in
        c) CONNECTIONS=$OPTARG ;;
        t) THREADS=$OPTARG ;;
        d) DURATION=$OPTARG ;;
        m) MAX_TOKENS=$OPTARG ;;
        u) BASE_URL=$OPTARG ;;
        h) usage 0 ;;
        *) usage 2 >&2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { echo "load-wrk: unexpected argument: $1" >&2; usage 2 >&2; }
for v in CONNECTIONS THREADS DURATION MAX_TOKENS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "load-wrk: $v must be a positive integer" >&2; usage 2 >&2; }
done
if [ "$DURATION" -gt 600 ] || [ "$CONNECTIONS" -gt 1000 ] || [ "$THREADS" -gt "$CONNECTIONS" ]; then
    echo "load-wrk: need duration <= 600 s, connections <= 1000, threads <= connections" >&2; exit 2
fi
case $BASE_URL in
    http://127.*|http://localhost*|http://\[::1\]*) ;;
    *) echo "load-wrk: base URL must be a loopback http:// address" >&2; exit 2 ;;
esac
BASE_URL=${BASE_URL%/}
command -v wrk >/dev/null || { echo "load-wrk: wrk not found (apt-get install wrk)" >&2; exit 1; }
lua=$(dirname "$0")/wrk-completions.lua
[ -f "$lua" ] || { echo "load-wrk: $lua missing" >&2; exit 1; }

echo "wrk: ${DURATION}s, $CONNECTIONS connections, $THREADS threads, max_tokens $MAX_TOKENS -> $BASE_URL/v1/completions"
out=$(timeout $((DURATION + 90)) wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --timeout 60s \
          --latency -s "$lua" "$BASE_URL" -- "$MAX_TOKENS")
echo "$out"
# wrk reports socket errors and non-2xx/3xx; the Lua done() reports non-200s
if grep -qE '^ *(Non-2xx|Socket errors)' <<<"$out"; then exit 1; fi
grep -q 'non-200: 0 ' <<<"$out" && grep -q 'without choices: 0' <<<"$out"
