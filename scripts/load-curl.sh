#!/usr/bin/env bash
# load-curl.sh - N concurrent streaming curl clients against /v1/completions.
#
# usage: scripts/load-curl.sh [-n CLIENTS] [-r REQS_PER_CLIENT] [-m MAX_TOKENS]
#                             [-u BASE_URL] [-T TIMEOUT_S] [-h]
#   -n  concurrent clients            (env CLIENTS,    default 4)
#   -r  requests per client           (env REQUESTS,   default 2)
#   -m  max_tokens per request        (env MAX_TOKENS, default 32)
#   -u  base URL, loopback only       (env BASE_URL,   default http://127.0.0.1:8080)
#   -T  per-request curl timeout, s   (env TIMEOUT_S,  default 120)
#
# Each request streams (SSE, stream_options.include_usage) and counts as a failure
# unless curl exits 0, the HTTP status is 200 and the stream ends with `data: [DONE]`.
# Prints total requests, failures, wall time and approximate output tokens/s
# (sum of the usage chunk's completion_tokens / wall time).
# Bounded: CLIENTS*REQUESTS requests, each capped by curl --max-time.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

CLIENTS=${CLIENTS:-4}
REQUESTS=${REQUESTS:-2}
MAX_TOKENS=${MAX_TOKENS:-32}
BASE_URL=${BASE_URL:-http://127.0.0.1:8080}
TIMEOUT_S=${TIMEOUT_S:-120}

while getopts "n:r:m:u:T:h" opt; do
    case $opt in
        n) CLIENTS=$OPTARG ;;
        r) REQUESTS=$OPTARG ;;
        m) MAX_TOKENS=$OPTARG ;;
        u) BASE_URL=$OPTARG ;;
        T) TIMEOUT_S=$OPTARG ;;
        h) usage 0 ;;
        *) usage 2 >&2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { echo "load-curl: unexpected argument: $1" >&2; usage 2 >&2; }
for v in CLIENTS REQUESTS MAX_TOKENS TIMEOUT_S; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "load-curl: $v must be a positive integer" >&2; usage 2 >&2; }
done
if [ "$CLIENTS" -gt 256 ] || [ "$REQUESTS" -gt 10000 ]; then echo "load-curl: at most 256 clients, 10000 requests each" >&2; exit 2; fi
case $BASE_URL in
    http://127.*|http://localhost*|http://\[::1\]*) ;;
    *) echo "load-curl: base URL must be a loopback http:// address" >&2; exit 2 ;;
esac
BASE_URL=${BASE_URL%/}
command -v curl >/dev/null || { echo "load-curl: curl not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

client() {  # $1 = client index; appends "ok TOKENS" or "fail REASON" lines to $tmp/c$1
    local c=$1 i out code rc toks
    for ((i = 0; i < REQUESTS; i++)); do
        out=$tmp/c$c.r$i
        body=$(printf '{"prompt":"Once upon a time, client %d request %d, there was","max_tokens":%d,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' "$c" "$i" "$MAX_TOKENS")
        rc=0
        code=$(curl -sS -N --max-time "$TIMEOUT_S" -o "$out" -w '%{http_code}' \
                    -H 'Content-Type: application/json' -d "$body" \
                    "$BASE_URL/v1/completions" 2>"$out.err") || rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "fail curl-exit-$rc" >>"$tmp/c$c"
        elif [ "$code" != 200 ]; then
            echo "fail http-$code" >>"$tmp/c$c"
        elif ! grep -q '^data: \[DONE\]' "$out"; then
            echo "fail no-DONE" >>"$tmp/c$c"
        else
            toks=$(grep -o '"completion_tokens":[0-9]*' "$out" | tail -1 | cut -d: -f2)
            echo "ok ${toks:-0}" >>"$tmp/c$c"
        fi
        rm -f "$out" "$out.err"
    done
}

t0=$(date +%s.%N)
pids=()
for ((c = 0; c < CLIENTS; c++)); do
    client "$c" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
t1=$(date +%s.%N)

cat "$tmp"/c* >"$tmp/all" 2>/dev/null || true
total=$(wc -l <"$tmp/all")
fails=$(grep -c '^fail' "$tmp/all" || true)
toks=$(awk '$1 == "ok" { s += $2 } END { print s + 0 }' "$tmp/all")
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
echo "base URL:       $BASE_URL"
echo "clients:        $CLIENTS x $REQUESTS requests, max_tokens $MAX_TOKENS"
echo "total requests: $total"
echo "failures:       $fails"
if [ "$fails" -gt 0 ]; then
    echo "failure kinds:  $(grep '^fail' "$tmp/all" | sort | uniq -c | awk '{printf "%s x%s  ", $3, $1}')"
fi
echo "wall time s:    $wall"
echo "output tokens:  $toks"
awk -v t="$toks" -v w="$wall" -v n="$((total - fails))" 'BEGIN {
    printf "approx tok/s:   %.1f\nreq/s:          %.2f\n", (w > 0 ? t / w : 0), (w > 0 ? n / w : 0) }'
[ "$fails" -eq 0 ]
