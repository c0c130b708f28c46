#!/usr/bin/env bash
# plot-serving.sh - server throughput and TTFT p50/p99 vs concurrent clients,
# one line per server (sparrow vs llama-server).
# Usage: scripts/plot-serving.sh [-o OUT.png] FILE.jsonl...
#   Records of scripts/bench-serving.py --json-out or ../shared/anchors/loadgen.py
#   --json-out (one per concurrency level: concurrency, output_tok_s,
#   ttft_p50_ms, ttft_p99_ms), grouped into series by their "label" (else the
#   file name). A line {"meta":true,"command":"...","date":"..."} may name the
#   command; else it is taken from the records' argv, the date from their
#   date/time field (else the file's). The title names each series' command
#   and date.
# Default OUT: docs/img/serving.png. Needs gnuplot (Debian: gnuplot-nox), python3.
set -euo pipefail
. "$(dirname "$0")/plot-common.sh"
plot_start docs/img/serving.png 1 0 "$@"

python3 - "$tmp" "${files[@]}" <<'PY'
import json, os, sys, textwrap, time
tmp, files = sys.argv[1], sys.argv[2:]
series, order, titles = {}, [], []
for path in files:
    meta = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        if r.get("meta"):
            meta = r
            continue
        if "concurrency" not in r or r.get("output_tok_s") is None:
            continue
        label = r.get("label") or os.path.basename(path)
        if label not in series:
            series[label] = []
            order.append(label)
            if meta.get("command"):
                cmd = meta["command"]
            elif r.get("argv"):
                argv, skip = [], False     # drop the machine-local --json-out/--pid values
                for a in r["argv"]:
                    if skip: skip = False; continue
                    if a in ("--json-out", "--pid"): skip = True; continue
                    if not a.startswith(("--json-out=", "--pid=")): argv.append(a)
                cmd = "bench-serving.py " + " ".join(argv)
            else:
                cmd = os.path.basename(path)
            date = (meta.get("date") or r.get("date") or r.get("time") or
                    time.strftime("%Y-%m-%d", time.gmtime(os.path.getmtime(path))))[:10]
            titles.append(textwrap.fill("%s: %s (%s)" % (label, cmd, date), 160, subsequent_indent="    "))
        series[label].append((r["concurrency"], r["output_tok_s"], r.get("ttft_p50_ms"), r.get("ttft_p99_ms")))
nan = lambda v: "NaN" if v is None else "%.3f" % v
for i, label in enumerate(order):
    with open(os.path.join(tmp, "s%d.dat" % i), "w") as f:
        for c, tps, p50, p99 in sorted(series[label]):
            f.write("%d %.3f %s %s\n" % (c, tps, nan(p50), nan(p99)))
esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')
with open(os.path.join(tmp, "vars.gp"), "w") as f:
    f.write('TITLE = "%s"\n' % "\\n".join(esc(t).replace("\n", "\\n") for t in titles))
    f.write("N = %d\n" % len(order))
    for i, label in enumerate(order):
        f.write('L%d = "%s"\n' % (i, esc(label)))
    f.write('label(i) = value(sprintf("L%d", i))\n')
PY

mkdir -p "$(dirname "$out")"
gnuplot <<GP
load "$tmp/vars.gp"
COLORS = "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b"
set terminal pngcairo size 1400,600 font "DejaVu Sans,10"
set output "$out"
set multiplot layout 1, 2 title TITLE font ",10" noenhanced
set logscale x 2
set grid
set xlabel "concurrent clients"
set key top left noenhanced
set title "throughput" font ",12"
set ylabel "output tokens/s"
set yrange [0:*]
plot for [i=0:N-1] "$tmp/s".i.".dat" using 1:2 with linespoints lw 2 pt 7 lc rgb word(COLORS, i % 6 + 1) title label(i)
set title "time to first token: p50 (solid), p99 (dashed)" font ",12"
set ylabel "TTFT ms (log scale)"
set logscale y
set yrange [*:*]
set key top left
plot for [i=0:N-1] "$tmp/s".i.".dat" using 1:3 with linespoints lw 2 pt 7 lc rgb word(COLORS, i % 6 + 1) title label(i)." p50", \
     for [i=0:N-1] "$tmp/s".i.".dat" using 1:4 with linespoints lw 2 pt 6 dt 2 lc rgb word(COLORS, i % 6 + 1) title label(i)." p99"
unset multiplot
GP
echo "plot-serving.sh: wrote $out"
