#!/usr/bin/env bash
# plot-sparse.sh - sparse formats: decode and prefill speed relative to the
# dense model of the same value precision, and perplexity, vs sparsity; one
# line per format family and value precision.
# Usage: scripts/plot-sparse.sh [-o OUT.png] FILE.jsonl
#   Records of scripts/sparse-bench.sh (format, values, sparsity, tg128,
#   pp512, dense_tg128, dense_pp512, ppl, dense_ppl); its meta line names the
#   command and date shown in the title. Colour: format family; line style:
#   value precision (1 solid f16, 2 dashed q8, 3 dotted q4).
# Default OUT: docs/img/sparse.png. Needs gnuplot (Debian: gnuplot-nox), python3.
set -euo pipefail
. "$(dirname "$0")/plot-common.sh"
plot_start docs/img/sparse.png 1 1 "$@"

python3 - "$tmp" "${files[0]}" <<'PY'
import json, os, sys, time
tmp, path = sys.argv[1], sys.argv[2]
meta, series = {}, {}
for line in open(path):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    if r.get("meta"):
        meta = r
        continue
    if r.get("format") in (None, "dense"):
        continue
    fmt = r["format"]
    family = fmt if fmt.startswith("1x") else ("V:N:M" if fmt.count(":") == 2 else "N:M")
    key = "%s %s" % (family, r["values"])
    series.setdefault(key, []).append((r["sparsity"] * 100, r["tg128"] / r["dense_tg128"],
                                       r["pp512"] / r["dense_pp512"], r["ppl"], r["dense_ppl"]))
if not series:
    sys.exit("plot-sparse.sh: %s has no sparse records" % path)
order = sorted(series)
for i, k in enumerate(order):
    with open(os.path.join(tmp, "s%d.dat" % i), "w") as f:
        for row in sorted(series[k]):
            f.write(" ".join("NaN" if v is None else "%.4f" % v for v in row) + "\n")
date = (meta.get("date") or time.strftime("%Y-%m-%d", time.gmtime(os.path.getmtime(path))))[:10]
title = "%s (%s, commit %s); speed: %s, perplexity: %s on %s" % (
    meta.get("command", os.path.basename(path)), date, meta.get("commit", "?"),
    meta.get("speed_model", "?"), meta.get("ppl_model", "?"), meta.get("ppl_text", "?"))
esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')
with open(os.path.join(tmp, "vars.gp"), "w") as f:
    f.write('TITLE = "%s"\nN = %d\n' % (esc(title), len(order)))
    for i, k in enumerate(order):
        f.write('L%d = "%s"\n' % (i, esc(k)))
    fams = sorted({k.split()[0] for k in order})
    precs = ["f16", "q8", "q4"]
    for i, k in enumerate(order):
        fam, prec = k.split()
        f.write("C%d = %d\nD%d = %d\n" % (i, fams.index(fam) + 1, i, precs.index(prec) + 1 if prec in precs else 4))
    f.write('label(i) = value(sprintf("L%d", i))\n')
    f.write('col(i) = word(COLORS, value(sprintf("C%d", i)))\n')
    f.write('dash(i) = value(sprintf("D%d", i))\n')
PY

mkdir -p "$(dirname "$out")"
gnuplot <<GP
COLORS = "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b"
load "$tmp/vars.gp"
set terminal pngcairo size 1800,600 font "DejaVu Sans,10"
set output "$out"
set multiplot layout 1, 3 title TITLE font ",10" noenhanced
set grid
set xlabel "sparsity %"
set xrange [45:92]
set key top left noenhanced font ",8"
set title "decode (tg128) speed / dense of the same precision" font ",12"
set ylabel "x dense"
plot for [i=0:N-1] "$tmp/s".i.".dat" using 1:2 with linespoints lw 2 pt 7 dt dash(i) lc rgb col(i) title label(i), \
     1 with lines lc rgb "black" dt 2 notitle
set title "prefill (pp512) speed / dense of the same precision" font ",12"
plot for [i=0:N-1] "$tmp/s".i.".dat" using 1:3 with linespoints lw 2 pt 7 dt dash(i) lc rgb col(i) title label(i), \
     1 with lines lc rgb "black" dt 2 notitle
set title "perplexity, magnitude pruning (dense: dashed)" font ",12"
set ylabel "perplexity (log scale)"
set logscale y
plot for [i=0:N-1] "$tmp/s".i.".dat" using 1:4 with linespoints lw 2 pt 7 dt dash(i) lc rgb col(i) title label(i), \
     for [i=0:N-1] "$tmp/s".i.".dat" using 1:5 with lines dt 3 lw 1 lc rgb col(i) notitle
unset multiplot
GP
echo "plot-sparse.sh: wrote $out"
