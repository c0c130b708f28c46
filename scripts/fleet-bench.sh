#!/usr/bin/env bash
# fleet-bench.sh - the fleet benchmark: N sparrow replicas behind HAProxy
# (scripts/fleet.sh, config/haproxy/sparrow.cfg) under the fair-bench workload
# (many clients, each with its own shared documents, one client hot), once per
# routing mode, then one markdown table:
#   rr       round robin
#   chash    consistent hashing on the prefix key
#   bounded  consistent hashing with bounded loads (hash-balance-factor)
# Columns: aggregate output tok/s, fleet prefix hit rate (sum of the replicas'
# /metrics), per-client p99 end-to-end latency, max load imbalance (completions
# per replica, max/mean), requests not completed (rejected + unfinished).
#
#   scripts/fleet-bench.sh [-m MODEL] [-n 3] [-d SECONDS] [--modes rr,chash,bounded]
#                          [--clients SPEC] [--out DIR] [-- SERVE-FLAGS...]
# Defaults: -m ../shared/models/synth15M-q8_0.gguf, -n 3 (each replica -t 1,
# the 2-core box shared by all), -d 60, clients
# A:1.0:2,B:0.3:6,C:0.3:6,D:0.3:6,E:0.15:0 (A: a hot client on 2 documents,
# i.e. skewed prefixes; B-D: 6 documents each; E: no shared prefix), 384-word
# documents, 64 output tokens. Ports: replicas 18081.., LB 18080, stats 18404.
# Environment: SPARROW_BIN, HAPROXY, SPARROW_LB_* (passed to HAProxy; e.g.
# SPARROW_LB_BALANCE_FACTOR=150, SPARROW_LB_KEY_BYTES=1024).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
model=${SPARROW_SHARED:-../shared}/models/synth15M-q8_0.gguf
n=3; duration=60; modes=rr,chash,bounded
clients=A:1.0:2,B:0.3:6,C:0.3:6,D:0.3:6,E:0.15:0
out=$(mktemp -d /tmp/fleet-bench.XXXXXX)
serve_args=(--scheduler-policy dlpm -c 8192 --max-running 8 --max-queue-per-client 256 --drain-timeout-s 5)
while [ $# -gt 0 ]; do
    case $1 in
        -m) model=$2; shift 2 ;;
        -n) n=$2; shift 2 ;;
        -d) duration=$2; shift 2 ;;
        --modes) modes=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --out) out=$2; mkdir -p "$out"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; serve_args+=("$@"); break ;;
        *) echo "fleet-bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
base=18081; lb=127.0.0.1:18080; stats=127.0.0.1:18404
reps=$(for k in $(seq 0 $((n - 1))); do printf 'http://127.0.0.1:%d,' $((base + k)); done)
run_dir=$out/run
trap '"$here/fleet.sh" stop --run-dir "$run_dir" >/dev/null 2>&1 || true' EXIT

for mode in ${modes//,/ }; do
    echo "== mode $mode" >&2
    "$here/fleet.sh" start -m "$model" -n "$n" --base-port $base --lb $lb --stats $stats --mode "$mode" \
        --run-dir "$run_dir" -- "${serve_args[@]}" --log-level warn >&2
    python3 "$here/fleet-bench.py" --lb "http://$lb" --replicas "$reps" --label "$mode" \
        --json-out "$out/$mode.json" --duration "$duration" --clients "$clients" >&2 || true
    "$here/fleet.sh" stop --run-dir "$run_dir" >&2
done

python3 - "$out" ${modes//,/ } <<'PY'
import json, math, os, sys
out, modes = sys.argv[1], sys.argv[2:]
runs = []
for m in modes:
    p = os.path.join(out, m + ".json")
    if os.path.exists(p):
        runs.append(json.load(open(p)))
if not runs:
    sys.exit("no results")
names = list(runs[0]["run"]["clients"])
f = lambda x, nd=2: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else "%.*f" % (nd, x)
print("| mode | out tok/s | fleet hit rate | " + " | ".join("p99 E2E %s (s)" % c for c in names)
      + " | max/mean load | per replica | not completed |")
print("|" + "---|" * (6 + len(names)))
for j in runs:
    r = j["run"]
    nc = sum(c["rejected"] + c["unfinished"] for c in r["clients"].values())
    sent = sum(c["sent"] for c in r["clients"].values())
    print("| %s | %s | %s | %s | %s | %s | %d/%d |" % (
        j["label"], f(r["out_tok_s"], 1), f(r["prefix_hit_rate"], 3),
        " | ".join(f(r["clients"][c]["e2e_p99"]) for c in names),
        f(r["imbalance"]), "/".join(str(int(x)) for x in r["replica_completions"]), nc, sent))
print()
print("(%s s per mode, clients %s; raw results in %s)" % (runs[0]["args"]["duration"], runs[0]["args"]["clients"], out))
PY
