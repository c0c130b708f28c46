#!/usr/bin/env bash
# load-ab.sh - apache bench (ab, Debian package apache2-utils) POSTing a
# non-streaming /v1/completions body.
#
# usage: scripts/load-ab.sh [-n REQUESTS] [-c CONCURRENCY] [-m MAX_TOKENS]
#                           [-u BASE_URL] [-s TIMEOUT_S] [-k] [-h]
#   -n  total requests                (env REQUESTS,    default 32)
#   -c  concurrent requests           (env CONCURRENCY, default 4)
#   -m  max_tokens per request        (env MAX_TOKENS,  default 8)
#   -u  base URL, loopback only       (env BASE_URL,    default http://127.0.0.1:8080)
#   -s  ab per-request timeout, s     (env TIMEOUT_S,   default 60)
#   -k  use HTTP keep-alive (ab -k)
#
# Writes the JSON body to a temp file, runs `ab -p BODY -T application/json`,
# and prints ab's summary lines (Requests per second, Time per request,
# Failed requests, Non-2xx responses). All completions are identical (same
# prompt, temperature 0), so ab's length check does not flag them.
# Bounded: REQUESTS requests (ab -n), each capped by ab -s.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

REQUESTS=${REQUESTS:-32}
CONCURRENCY=${CONCURRENCY:-4}
MAX_TOKENS=${MAX_TOKENS:-8}
BASE_URL=${BASE_URL:-http://127.0.0.1:8080}
TIMEOUT_S=${TIMEOUT_S:-60}
KEEPALIVE=()

while getopts "n:c:m:u:s:kh" opt; do
    case $opt in
        n) REQUESTS=$OPTARG ;;
        c) CONCURRENCY=$OPTARG ;;
        m) MAX_TOKENS=$OPTARG ;;
        u) BASE_URL=$OPTARG ;;
        s) TIMEOUT_S=$OPTARG ;;
        k) KEEPALIVE=(-k) ;;
        h) usage 0 ;;
        *) usage 2 >&2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { echo "load-ab: unexpected argument: $1" >&2; usage 2 >&2; }
for v in REQUESTS CONCURRENCY MAX_TOKENS TIMEOUT_S; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "load-ab: $v must be a positive integer" >&2; usage 2 >&2; }
done
if [ "$REQUESTS" -gt 100000 ] || [ "$CONCURRENCY" -gt 1000 ]; then echo "load-ab: at most 100000 requests, 1000 concurrent" >&2; exit 2; fi
case $BASE_URL in
    http://127.*|http://localhost*|http://\[::1\]*) ;;
    *) echo "load-ab: base URL must be a loopback http:// address" >&2; exit 2 ;;
esac
BASE_URL=${BASE_URL%/}
command -v ab >/dev/null || { echo "load-ab: ab not found (apt-get install apache2-utils)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '{"prompt":"Once upon a time, there was a little","max_tokens":%d,"temperature":0,"stream":false}' \
    "$MAX_TOKENS" >"$tmp/body.json"

echo "ab: $REQUESTS requests, $CONCURRENCY concurrent, max_tokens $MAX_TOKENS -> $BASE_URL/v1/completions"
rc=0
# ab needs a path; "localhost" may resolve to ::1 first, which is fine for ab.
ab -q -n "$REQUESTS" -c "$CONCURRENCY" -s "$TIMEOUT_S" "${KEEPALIVE[@]}" \
   -p "$tmp/body.json" -T application/json \
   "$BASE_URL/v1/completions" >"$tmp/out" 2>"$tmp/err" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "load-ab: ab exited $rc" >&2
    cat "$tmp/err" >&2
    tail -n 20 "$tmp/out" >&2
    exit "$rc"
fi
grep -E '^(Complete requests|Failed requests|   \(Connect|Non-2xx responses|Requests per second|Time per request|Time taken for tests|Transfer rate):' "$tmp/out" || true
grep -q '^Non-2xx responses' "$tmp/out" && nonok=1 || nonok=0
failed=$(awk '/^Failed requests:/ { print $3 }' "$tmp/out")
echo "percentiles ms: $(awk '/^ +(50|90|99|100)% +[0-9]/ { printf "p%s=%s ", $1, $2 }' "$tmp/out" | tr -d '%')"
[ "${failed:-1}" -eq 0 ] && [ "$nonok" -eq 0 ]
