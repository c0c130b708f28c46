#!/usr/bin/env bash
# valgrind.sh BUILD - memcheck over the light unit tests of BUILD/tests and
# over a short scripted session of BUILD/sparrow serve (stories260K, loopback):
# completions, a chat, a stream, a stream the client abandons, a whole
# response the client abandons, bad JSON, /tokenize, /metrics, then SIGTERM.
# Each run fails on any memcheck error or any "definitely lost" block; the
# daemon must also exit 0. Usage: make valgrind (builds build/valgrind first).
# Output: one line per run, then `N passed, M failed`; logs in build/valgrind-logs/.
set -euo pipefail
build=$1
shared=${SHARED:-../shared}
model=$shared/models/stories260K-f32.gguf
logs=build/valgrind-logs
mkdir -p "$logs"
vg=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=yes --quiet)
passed=0; failed=0

for t in test_gguf test_tokenizer test_sampler test_queue test_kvcache test_batcher test_settings; do
    [ -x "$build/tests/$t" ] || { echo "FAIL $t: not built"; failed=$((failed + 1)); continue; }
    if SPARROW_SHARED=$shared "${vg[@]}" --log-file="$logs/$t.log" "$build/tests/$t" >"$logs/$t.out" 2>&1 \
        && ! grep -q "definitely lost" "$logs/$t.log"; then
        echo "ok $t ($(tail -1 "$logs/$t.out"))"; passed=$((passed + 1))
    else
        echo "FAIL $t: see $logs/$t.log"; head -30 "$logs/$t.log" | sed 's/^/    /'; failed=$((failed + 1))
    fi
done

# The daemon: started under valgrind, driven by a short python session.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${vg[@]}" --log-file="$logs/daemon.log" "$build/sparrow" serve -m "$model" --host 127.0.0.1 \
    --port "$port" -t 1 --log-level warn >"$logs/daemon.out" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
session_ok=1
python3 - "$port" "$pid" <<'EOF' || session_ok=0
import json, os, signal, socket, sys, time
import requests
port, pid = int(sys.argv[1]), int(sys.argv[2])
base = "http://127.0.0.1:%d" % port
deadline = time.monotonic() + 180
while True:
    try:
        if requests.get(base + "/health", timeout=5).status_code == 200:
            break
    except requests.RequestException:
        pass
    assert time.monotonic() < deadline, "daemon not ready under valgrind"
    time.sleep(0.5)
def post(path, body, **kw):
    return requests.post(base + path, json=body, timeout=300, **kw)
for p in ("Once upon a time", "The cat sat", "Lily and Tom"):
    r = post("/v1/completions", {"prompt": p, "max_tokens": 16, "temperature": 0})
    assert r.status_code == 200, r.text
r = post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
assert r.status_code == 200, r.text
r = post("/v1/completions", {"prompt": "Once", "max_tokens": 12, "stream": True,
                             "stream_options": {"include_usage": True}}, stream=True)
assert r.status_code == 200 and b"[DONE]" in r.content, r.content[-200:]
body = json.dumps({"prompt": "Once", "max_tokens": 400, "ignore_eos": True, "stream": True}).encode()
for stream in (True, False):        # clients that leave mid-generation
    b = body if stream else body.replace(b'"stream": true', b'"stream": false')
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(b), b))
    if stream:
        s.recv(4096)
    else:
        time.sleep(0.5)
    s.close()
assert post("/v1/completions", {"prompt": 5}).status_code == 400
assert requests.post(base + "/v1/completions", data=b"{bad", timeout=60).status_code == 400
assert post("/tokenize", {"content": "Hello"}).status_code == 200
assert requests.get(base + "/metrics", timeout=60).status_code == 200
time.sleep(2)                       # let the abandoned requests be cancelled
os.kill(pid, signal.SIGTERM)
EOF
rc=0
wait "$pid" || rc=$?
trap - EXIT
if [ "$session_ok" = 1 ] && [ "$rc" = 0 ] && ! grep -q "definitely lost" "$logs/daemon.log" \
    && ! grep -q "ERROR SUMMARY: [1-9]" "$logs/daemon.log"; then
    echo "ok daemon session (exit 0, no memcheck errors, nothing definitely lost)"; passed=$((passed + 1))
else
    echo "FAIL daemon session: python ok=$session_ok, exit $rc; see $logs/daemon.log"
    head -40 "$logs/daemon.log" | sed 's/^/    /'; failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
