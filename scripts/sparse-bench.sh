#!/usr/bin/env bash
# sparse-bench.sh - the sparse format x sparsity x value precision table, in one
# run: for each configuration, sparsify an F16 copy of synth110M (speed: the
# 110M shape is where pruning pays, see ../shared/models/README.md) and
# stories260K (quality: the only real model; perplexity on held-out text),
# next to the dense model of the same precision. Each sparse model is pruned
# from that dense twin (so tensors left dense, e.g. the output head, have the
# twin's type).
#
# usage: scripts/sparse-bench.sh [-r REPS] [-o OUT.jsonl] [-c CONFIGS] [-q PRECISIONS] [-h]
#   -r  repetitions of pp512 / tg128         (env REPS, default 3)
#   -o  JSON lines out (one per row + a meta line; default docs/data/sparse.jsonl)
#   -c  configurations, space-separated FORMAT@SPARSITY (default: the README's:
#       2:4 4:8 3:8 2:8 1:8 64:2:8 64:2:16 and block 1x4 / 1x16 at 50 62.5 75 87.5%)
#   -q  value precisions (default "f16 q8 q4"; dense twins f16, q8_0, q4_0)
# env: SHARED (../shared), SPARROW (./sparrow), WORK (cache of model copies,
#      default /tmp/sparrow-sparse-bench), THREADS (2)
# Perplexity: Wanda calibrates on the first 16 stories of
# ../shared/testdata/text/stories-heldout.txt; every perplexity here (dense,
# magnitude, Wanda) is measured on the other 48, ctx 256.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

SHARED=${SHARED:-../shared}
SPARROW=${SPARROW:-./sparrow}
WORK=${WORK:-/tmp/sparrow-sparse-bench}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
OUT=docs/data/sparse.jsonl
CONFIGS="2:4@50 4:8@50 3:8@62.5 2:8@75 1:8@87.5 64:2:8@75 64:2:16@87.5
1x4@50 1x4@62.5 1x4@75 1x4@87.5 1x16@50 1x16@62.5 1x16@75 1x16@87.5"
PRECISIONS="f16 q8 q4"
while getopts "r:o:c:q:h" opt; do
    case $opt in
        r) REPS=$OPTARG ;;
        o) OUT=$OPTARG ;;
        c) CONFIGS=$OPTARG ;;
        q) PRECISIONS=$OPTARG ;;
        h) usage 0 ;;
        *) usage 2 >&2 ;;
    esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "sparse-bench.sh: -r must be a positive integer" >&2; exit 2; }
[ -x "$SPARROW" ] || { echo "sparse-bench.sh: $SPARROW not found (run make)" >&2; exit 1; }
src110=$SHARED/models/synth110M-q4_k_m.gguf src260=$SHARED/models/stories260K-f32.gguf
text=$SHARED/testdata/text/stories-heldout.txt
for f in "$src110" "$src260" "$text"; do [ -f "$f" ] || { echo "sparse-bench.sh: $f missing" >&2; exit 1; }; done
mkdir -p "$WORK"

log() { echo "sparse-bench.sh: $*" >&2; }
dense_type() { case $1 in f16) echo f16 ;; q8) echo q8_0 ;; q4) echo q4_0 ;; esac; }

# Calibration / evaluation split (stories are blank-line separated paragraphs).
awk -v RS= -v ORS='\n\n' 'NR <= 16' "$text" > "$WORK/calib.txt"
awk -v RS= -v ORS='\n\n' 'NR > 16' "$text" > "$WORK/eval.txt"

# sparsify_args SPEC: the sparsify flags of FORMAT@SPARSITY.
sparsify_args() {
    local fmt=${1%@*} sp=${1#*@}
    local s; s=$(awk -v p="$sp" 'BEGIN { printf "%.4f", p / 100 }')
    case $fmt in
        1x*) echo "--format block --block $fmt --sparsity $s" ;;
        *) echo "--format $fmt --sparsity $s" ;;
    esac
}

# bench FILE -> "pp_mean pp_sd tg_mean tg_sd", after a short warm-up run (the
# first decode after a model file was written measured up to 25% slow).
bench() {
    "$SPARROW" bench -m "$1" -p 0 -n 32 -r 1 -t "$THREADS" >/dev/null 2>&1
    "$SPARROW" bench -m "$1" -p 512 -n 128 -r "$REPS" -t "$THREADS" --json 2>/dev/null |
        python3 -c '
import json, sys
r = {j["test"]: j for j in map(json.loads, sys.stdin)}
print(r["pp512"]["tps_mean"], r["pp512"]["tps_sd"], r["tg128"]["tps_mean"], r["tg128"]["tps_sd"])'
}

ppl() {
    "$SPARROW" perplexity -m "$1" -f "$WORK/eval.txt" -c 256 -t "$THREADS" 2>/dev/null |
        sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p'
}

# ppl_sparse TARGET DENSE VALUES METHOD SPARSIFY_ARGS...: perplexity of the
# pruned stories260K, or null unless the pruned tensors reach the TARGET
# sparsity (its 64-wide rows are narrower than the super-block of most
# 62.5-87.5% formats, and a 64-column block group rounds 62.5% to 50%).
ppl_sparse() {
    local target=$1 d=$2 q=$3 method=$4 out=$WORK/s260.gguf
    shift 4
    if ! "$SPARROW" sparsify -m "$d" -o "$out" "$@" --quant "$q" --method "$method" 2>"$WORK/err260" ||
       ! sed -n 's/.* tensors pruned.*sparsity \([0-9.]*\)%.*/\1/p' "$WORK/err260" |
           awk -v t="$target" '$1 > 0 && ($1 - t) ^ 2 < 4 { ok = 1 } END { exit !ok }'; then
        echo null
        return
    fi
    local p; p=$(ppl "$out")
    echo "${p:-null}"
}

mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }

tmp_jsonl=$(mktemp)
trap 'rm -f "$tmp_jsonl"' EXIT
echo "{\"meta\": true, \"command\": \"scripts/sparse-bench.sh -r $REPS\", \"date\": \"$(date +%F)\", \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\", \"speed_model\": \"synth110M (f16/q8_0/q4_0 copies of synth110M-q4_k_m)\", \"ppl_model\": \"stories260K (f16/q8_0/q4_0 copies)\", \"ppl_text\": \"stories-heldout.txt stories 17-64, ctx 256\"}" >"$tmp_jsonl"

for q in $PRECISIONS; do
    dt=$(dense_type "$q")
    d110=$WORK/synth110M-$dt.gguf d260=$WORK/stories260K-$dt.gguf
    [ -f "$d110" ] || "$SPARROW" quantize -m "$src110" -o "$d110" --type "$dt" 2>/dev/null
    [ -f "$d260" ] || "$SPARROW" quantize -m "$src260" -o "$d260" --type "$dt" 2>/dev/null
    log "dense $dt ..."
    read -r dpp dpps dtg dtgs < <(bench "$d110")
    dppl=$(ppl "$d260")
    echo "{\"format\": \"dense\", \"values\": \"$q\", \"type\": \"$dt\", \"sparsity\": 0, \"size_mib\": $(mib "$d110"), \"pp512\": $dpp, \"pp512_sd\": $dpps, \"tg128\": $dtg, \"tg128_sd\": $dtgs, \"ppl\": $dppl}" >>"$tmp_jsonl"
    for c in $CONFIGS; do
        args=$(sparsify_args "$c")
        s110=$WORK/s110.gguf
        log "$c $q ..."
        # shellcheck disable=SC2086
        "$SPARROW" sparsify -m "$d110" -o "$s110" $args --quant "$q" --method magnitude -t "$THREADS" 2>"$WORK/err" \
            || { log "sparsify $c $q failed: $(tail -1 "$WORK/err")"; continue; }
        read -r pp pps tg tgs < <(bench "$s110")
        echo "{\"format\": \"${c%@*}\", \"values\": \"$q\", \"sparsity\": $(awk -v p="${c#*@}" 'BEGIN { print p / 100 }'), \"size_mib\": $(mib "$s110"), \"pp512\": $pp, \"pp512_sd\": $pps, \"tg128\": $tg, \"tg128_sd\": $tgs, \"ppl\": $(ppl_sparse "${c#*@}" "$d260" "$q" magnitude $args), \"ppl_wanda\": $(ppl_sparse "${c#*@}" "$d260" "$q" wanda --calib "$WORK/calib.txt" $args), \"dense_tg128\": $dtg, \"dense_pp512\": $dpp, \"dense_ppl\": $dppl, \"dense_size_mib\": $(mib "$d110")}" >>"$tmp_jsonl"
    done
done
mkdir -p "$(dirname "$OUT")"
cp "$tmp_jsonl" "$OUT"
log "wrote $OUT"

# The README table.
python3 - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
na = lambda v: "n/a" if v is None else v
print("| format | sparsity | values | size MiB | tg128 t/s | vs dense | pp512 t/s | vs dense | PPL magnitude | PPL Wanda |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r.get("meta"): continue
    if r["format"] == "dense":
        print(f"| dense {r['type']} | 0 | {r['values']} | {r['size_mib']} | {r['tg128']:.1f} ± {r['tg128_sd']:.1f} | 1.00x | "
              f"{r['pp512']:.1f} | 1.00x | {r['ppl']} | |")
        continue
    print(f"| {r['format']} | {r['sparsity'] * 100:g}% | {r['values']} | {r['size_mib']} | {r['tg128']:.1f} ± {r['tg128_sd']:.1f} | "
          f"{r['tg128'] / r['dense_tg128']:.2f}x | {r['pp512']:.1f} | {r['pp512'] / r['dense_pp512']:.2f}x | {na(r['ppl'])} | {na(r['ppl_wanda'])} |")
EOF
