#!/usr/bin/env bash
# plot-bench.sh - single-stream speed, sparrow vs llama.cpp, per model and
# quant: one panel per test (pp128, pp512, tg128, ...), bars = tokens/s
# (mean, error bar = stddev), log scale.
# Usage: scripts/plot-bench.sh [-o OUT.png] SPARROW.jsonl [LLAMACPP.jsonl]
#   SPARROW.jsonl   lines of `sparrow bench ... --json` (membw lines ignored)
#   LLAMACPP.jsonl  the same fields for llama.cpp (docs/data/bench-llamacpp.jsonl
#                   holds the anchor of ../shared/anchors/llama.cpp.md)
#   Either file may start with {"meta":true,"command":"...","date":"YYYY-MM-DD"};
#   the plot's title names each file's command and date (file date if absent).
# Default OUT: docs/img/bench.png. Needs gnuplot (Debian: gnuplot-nox), python3.
set -euo pipefail
. "$(dirname "$0")/plot-common.sh"
plot_start docs/img/bench.png 1 0 "$@"

python3 - "$tmp" "${files[@]}" <<'PY'
import json, os, sys, textwrap, time
tmp, files = sys.argv[1], sys.argv[2:]
names = ["sparrow", "llama.cpp"]
data, titles, tests, models = {}, [], [], []
for i, path in enumerate(files):
    meta = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        if r.get("meta"):
            meta = r
            continue
        if "tps_mean" not in r:
            continue
        m = r["model"][:-5] if r["model"].endswith(".gguf") else r["model"]
        if i == 0 and m not in models: models.append(m)
        if i == 0 and r["test"] not in tests: tests.append(r["test"])
        data[(i, m, r["test"])] = (r["tps_mean"], r.get("tps_sd", 0.0))
    date = meta.get("date") or time.strftime("%Y-%m-%d", time.gmtime(os.path.getmtime(path)))
    titles.append(textwrap.fill("%s: %s (%s)" % (names[i], meta.get("command", os.path.basename(path)), date),
                                170, subsequent_indent="    "))
def key(t):  # pp before tg, then by size
    return (t[:2], int(''.join(c for c in t if c.isdigit()) or 0))
tests.sort(key=key)
for t in tests:
    with open(os.path.join(tmp, t + ".dat"), "w") as f:
        for m in models:
            row = [m]
            for i in range(len(files)):
                v = data.get((i, m, t))
                row += ["%.2f" % v[0], "%.2f" % v[1]] if v else ["NaN", "NaN"]
            f.write(" ".join(row) + "\n")
esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')
with open(os.path.join(tmp, "vars.gp"), "w") as f:
    f.write('TITLE = "%s"\n' % "\\n".join(esc(t).replace("\n", "\\n") for t in titles))
    f.write('TESTS = "%s"\nNFILES = %d\n' % (" ".join(tests), len(files)))
PY

mkdir -p "$(dirname "$out")"
gnuplot <<GP
load "$tmp/vars.gp"
set terminal pngcairo size 1500,620 font "DejaVu Sans,10"
set output "$out"
set multiplot layout 1, words(TESTS) title TITLE font ",10"
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set logscale y
set yrange [10:*]
set grid ytics
set ylabel "tokens/s (log scale)"
set xtics rotate by -35 noenhanced
set key top right
set bmargin 7
set rmargin 7
do for [t in TESTS] {
    set title t font ",12"
    if (NFILES > 1) {
        plot "$tmp/".t.".dat" using 2:3:xtic(1) title "sparrow" lc rgb "#1f77b4", \
             "" using 4:5 title "llama.cpp" lc rgb "#ff7f0e"
    } else {
        plot "$tmp/".t.".dat" using 2:3:xtic(1) title "sparrow" lc rgb "#1f77b4"
    }
}
unset multiplot
GP
echo "plot-bench.sh: wrote $out"
