#!/usr/bin/env bash
# bench.sh - what `make bench` runs (the Makefile builds first; this builds nothing):
# `sparrow bench -m MODEL -r REPS --json` on each shipped model, then a markdown
# table of sparrow's pp128/pp512/tg128 tokens/s beside llama.cpp's llama-bench
# figures and the ratio sparrow / llama.cpp (> 1 means sparrow is faster).
#
# usage: scripts/bench.sh [-r REPS] [-t THREADS] [-m MODEL_NAME ...] [-h]
#   -r  repetitions per test          (env REPS,    default 3)
#   -t  threads                       (env THREADS, default 2, as llama.cpp was run)
#   -m  model name without .gguf, or a path to a GGUF file; repeatable
#       (default: all seven shipped models)
# env:
#   BATCH_MODELS  models for the batched-decode table (default synth15M-q8_0 synth110M-q4_k_m)
#   SHARED   data dir holding models/ and anchors/   (default ../shared)
#   SPARROW  the binary                               (default ./sparrow)
#   JSON_OUT if set, the raw JSON lines are appended to this file
# Bounded: one sparrow bench run per model, each capped at 600 s by timeout(1).
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

SHARED=${SHARED:-../shared}
SPARROW=${SPARROW:-./sparrow}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
MODELS=()
while getopts "r:t:m:h" opt; do
    case $opt in
        r) REPS=$OPTARG ;;
        t) THREADS=$OPTARG ;;
        m) MODELS+=("$OPTARG") ;;
        h) usage 0 ;;
        *) usage 2 >&2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { echo "bench.sh: unexpected argument: $1" >&2; usage 2 >&2; }
for v in REPS THREADS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: $v must be a positive integer" >&2; usage 2 >&2; }
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(stories260K-f32 stories260K-f16 stories260K-q4_k_m
                                   synth15M-f16 synth15M-q8_0 synth15M-q4_0 synth110M-q4_k_m)
[ -x "$SPARROW" ] || { echo "bench.sh: $SPARROW not found or not executable (run make)" >&2; exit 1; }
[ -d "$SHARED/models" ] || { echo "bench.sh: $SHARED/models not found (set SHARED)" >&2; exit 1; }

# llama.cpp's llama-bench figures (tokens/s, mean and stddev of 5 repetitions,
# -p 128,512 -n 128 -t 2), copied from $SHARED/anchors/llama.cpp.md, section 1,
# measured 2026-11-24 on this machine kind (llama.cpp b4747-1-gc392e5094).
# model|pp128 mean|pp128 sd|pp512 mean|pp512 sd|tg128 mean|tg128 sd
ANCHORS='
stories260K-f32|14056.1|706.1|4588.5|458.0|3141.1|320.3
stories260K-f16|13964.0|124.9|4896.0|134.1|3204.0|65.8
stories260K-q4_k_m|14728.0|206.1|5009.3|152.2|3134.0|116.0
synth15M-f32|5881.6|166.9|4273.2|614.5|461.4|22.2
synth15M-f16|3788.6|1499.6|4328.9|113.9|379.9|4.3
synth15M-q8_0|8019.0|180.2|4763.8|245.1|757.3|37.6
synth15M-q4_0|7458.7|228.1|4877.0|264.2|902.9|97.3
synth15M-q4_k_m|6092.6|506.0|4619.9|151.7|876.9|18.6
synth110M-f32|757.0|20.6|611.0|31.6|59.1|5.3
synth110M-f16|870.9|6.3|681.6|39.3|138.6|7.6
synth110M-q8_0|884.6|75.0|763.7|7.6|189.0|6.8
synth110M-q4_0|933.4|58.3|763.6|53.1|322.6|28.6
synth110M-q4_k_m|651.3|8.9|556.0|11.1|210.7|3.8
'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
for m in "${MODELS[@]}"; do
    f=$SHARED/models/$m.gguf
    case $m in */*) f=$m; m=$(basename "$m" .gguf) ;; esac   # a path: a copy made with sparrow quantize
    if [ ! -f "$f" ]; then
        echo "bench.sh: $f missing, skipped" >&2
        echo "{\"model\":\"$m\",\"error\":\"missing\"}" >>"$tmp/all.jsonl"
        failed=1
        continue
    fi
    echo "bench.sh: $m ..." >&2
    rc=0
    timeout 600 "$SPARROW" bench -m "$f" -r "$REPS" -t "$THREADS" --json >"$tmp/$m.jsonl" 2>"$tmp/$m.err" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench.sh: sparrow bench on $m failed (exit $rc):" >&2
        tail -n 5 "$tmp/$m.err" >&2
        echo "{\"model\":\"$m\",\"error\":\"exit $rc\"}" >>"$tmp/all.jsonl"
        failed=1
        continue
    fi
    # tag each line with the name we asked for (sparrow reports the file name)
    sed "s/^{/{\"name\":\"$m\",/" "$tmp/$m.jsonl" >>"$tmp/all.jsonl"
done
[ -z "${JSON_OUT:-}" ] || cat "$tmp/all.jsonl" >>"$JSON_OUT"

ANCHORS=$ANCHORS REPS=$REPS THREADS=$THREADS python3 - "$tmp/all.jsonl" <<'EOF'
import json, os, sys
anchors = {}
for line in os.environ["ANCHORS"].split():
    f = line.split("|")
    anchors[f[0]] = {"pp128": (float(f[1]), float(f[2])), "pp512": (float(f[3]), float(f[4])),
                     "tg128": (float(f[5]), float(f[6]))}
print("sparrow bench -r %s -t %s vs llama-bench -r 5 -t 2 (llama.cpp.md, 2026-11-24); "
      "tokens/s, mean ± sd; ratio = sparrow / llama.cpp" % (os.environ["REPS"], os.environ["THREADS"]))
print()
print("| model | test | sparrow t/s | llama.cpp t/s | ratio |")
print("|---|---|---|---|---|")
bounds = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    name = r.get("name") or r["model"]
    if r.get("test") == "membw":
        bounds.append("%s: memory read bandwidth %.1f GB/s, %.1f MiB of weights per token: decode bound %.0f t/s"
                      % (name, r["gbs"], r["weight_bytes"] / 1048576, r["tg_bound_tps"]))
        continue
    if "error" in r:
        print("| %s | - | %s | - | - |" % (name, r["error"]))
        continue
    a = anchors.get(name, {}).get(r["test"])
    mine = "%.1f ± %.1f" % (r["tps_mean"], r["tps_sd"])
    if a:
        print("| %s | %s | %s | %.1f ± %.1f | %.2f |" % (name, r["test"], mine, a[0], a[1], r["tps_mean"] / a[0]))
    else:
        print("| %s | %s | %s | - | - |" % (name, r["test"], mine))
print()
for b in bounds:
    print(b)
EOF

# Batched decode through the in-process scheduler (one line per figure):
# aggregate tokens/s with N requests at once, against N = 1. "out" counts
# every generated token over the wall time (prefill included); "decode" is
# the generation rate alone (sum over requests of tokens / time between the
# first and last token).
echo
echo "batched decode: sparrow bench -m MODEL --concurrent 1,4,16,64 -r $REPS -t $THREADS (64 prompt + 128 generated tokens each)"
echo
echo "| model | requests | out tok/s | x single | decode tok/s | x single | TTFT mean ms | TPOT mean ms |"
echo "|---|---|---|---|---|---|---|---|"
for m in ${BATCH_MODELS:-synth15M-q8_0 synth110M-q4_k_m}; do
    f=$SHARED/models/$m.gguf
    case $m in */*) f=$m; m=$(basename "$m" .gguf) ;; esac
    [ -f "$f" ] || { echo "| $m | missing | - | - | - | - | - | - |"; failed=1; continue; }
    # to a file first: a reader starting up beside it (python) would steal a
    # core from the short one-request runs
    timeout 900 "$SPARROW" bench -m "$f" -r "$REPS" -t "$THREADS" --concurrent 1,4,16,64 --json \
        >"$tmp/$m.batched" 2>/dev/null || failed=1
    python3 -c '
import json, sys
name = sys.argv[1]; base = None
for line in sys.stdin:
    r = json.loads(line)
    base = base or r
    print("| %s | %s | %.1f ± %.1f | %.2f | %.1f ± %.1f | %.2f | %.1f | %.2f |" % (
        name, r["test"][5:], r["out_tps"], r["out_tps_sd"], r["out_tps"] / base["out_tps"],
        r["decode_tps"], r["decode_tps_sd"], r["decode_tps"] / base["decode_tps"], r["ttft_ms"], r["tpot_ms"]))' \
        "$m" <"$tmp/$m.batched" || failed=1
done
exit "$failed"
