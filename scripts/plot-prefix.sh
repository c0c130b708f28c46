#!/usr/bin/env bash
# plot-prefix.sh - shared-prefix workload: TTFT p50/p99 and output throughput vs
# concurrent clients, one line per server (sparrow vs llama-server).
# Usage: scripts/plot-prefix.sh [-o OUT.png] FILE.jsonl...
#   Records of ../shared/anchors/loadgen.py or scripts/bench-serving.py
#   --json-out (one per level: concurrency, output_tok_s, ttft_p50_ms,
#   ttft_p99_ms); only "workload": "prefix" records are drawn (others, e.g. the
#   uniform control, are skipped; a file with none is an error). Series come from
#   "label" (else the file name); one record per level and series. A line
#   {"meta":true,"command":"...","date":"..."} names the command, else the
#   file name; the date is the meta date, else the records' time. The title
#   names each series' command and date. TTFT is on a log scale when it spans
#   more than 20x.
# Default OUT: docs/img/prefix.png. Needs gnuplot (Debian: gnuplot-nox), python3.
set -euo pipefail
. "$(dirname "$0")/plot-common.sh"
plot_start docs/img/prefix.png 1 0 "$@"

python3 - "$tmp" "${files[@]}" <<'PY'
import json, math, os, sys, textwrap, time
tmp, files = sys.argv[1], sys.argv[2:]

def die(msg):
    sys.exit("plot-prefix.sh: " + msg)

def num(r, key, where, positive=False):
    v = r.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
            or (positive and v <= 0):
        die("%s: %s must be a %s number, got %r" % (where, key, "positive" if positive else "non-negative", v))
    return float(v)

series, order, titles = {}, [], []
for path in files:
    meta, n = {}, 0
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            where = "%s:%d" % (path, lineno)
            try:
                r = json.loads(line)
            except ValueError as e:
                die("%s: not JSON (%s)" % (where, e))
            if not isinstance(r, dict):
                die("%s: not a JSON object" % where)
            if r.get("meta"):
                meta = r
                continue
            if r.get("workload") != "prefix":
                continue
            c = r.get("concurrency")
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                die("%s: concurrency must be a positive integer, got %r" % (where, c))
            if r.get("completed") == 0:
                die("%s: no request completed at %d clients" % (where, c))
            tps = num(r, "output_tok_s", where)
            p50 = num(r, "ttft_p50_ms", where, positive=True)
            p99 = num(r, "ttft_p99_ms", where, positive=True)
            if p99 < p50:
                die("%s: ttft_p99_ms %.1f < ttft_p50_ms %.1f" % (where, p99, p50))
            if r.get("errors"):
                print("plot-prefix.sh: %s: warning: %s failed requests at %d clients" % (where, r["errors"], c),
                      file=sys.stderr)
            label = r.get("label") or os.path.basename(path)
            if label not in series:
                series[label] = {}
                order.append(label)
                cmd = meta.get("command") or os.path.basename(path)
                date = (meta.get("date") or r.get("date") or r.get("time") or
                        time.strftime("%Y-%m-%d", time.gmtime(os.path.getmtime(path))))[:10]
                titles.append(textwrap.fill("%s: %s (%s)" % (label, cmd, date), 170, subsequent_indent="    "))
            if c in series[label]:
                die("%s: a second %d-client record for %r (keep one run per level)" % (where, c, label))
            series[label][c] = (tps, p50, p99)
            n += 1
    if n == 0:
        die('%s: no shared-prefix records ("workload": "prefix" with concurrency, output_tok_s, '
            'ttft_p50_ms, ttft_p99_ms)' % path)

ttfts = [v for s in series.values() for (_, p50, p99) in s.values() for v in (p50, p99)]
levels = sorted({c for s in series.values() for c in s})
for i, label in enumerate(order):
    with open(os.path.join(tmp, "s%d.dat" % i), "w") as f:
        for c in sorted(series[label]):
            f.write("%d %.3f %.3f %.3f\n" % ((c,) + series[label][c]))
esc = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')
with open(os.path.join(tmp, "vars.gp"), "w") as f:
    f.write('TITLE = "%s"\n' % "\\n".join(esc(t).replace("\n", "\\n") for t in titles))
    f.write("N = %d\n" % len(order))
    f.write("LOGY = %d\n" % (max(ttfts) / min(ttfts) > 20))
    f.write("XMIN = %g\nXMAX = %g\n" % (levels[0] / 1.4, levels[-1] * 1.4))
    f.write('XTICS = "(%s)"\n' % ", ".join('\\"%d\\" %d' % (c, c) for c in levels))
    for i, label in enumerate(order):
        f.write('L%d = "%s"\n' % (i, esc(label)))
    f.write('label(i) = value(sprintf("L%d", i))\n')
PY

mkdir -p "$(dirname "$out")"
gnuplot <<GP
load "$tmp/vars.gp"
COLORS = "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b"
set terminal pngcairo size 1400,620 font "DejaVu Sans,10"
set output "$out"
set multiplot layout 1, 2 title TITLE font ",10" noenhanced
set logscale x 2
set xrange [XMIN:XMAX]
eval "set xtics ".XTICS
set grid
set xlabel "concurrent clients"
set key top left noenhanced
set title "shared prefix: output throughput" font ",12"
set ylabel "output tokens/s"
set yrange [0:*]
plot for [i=0:N-1] "$tmp/s".i.".dat" using 1:2 with linespoints lw 2 pt 7 ps 1.5 lc rgb word(COLORS, i % 6 + 1) title label(i)
set title "shared prefix: time to first token, p50 (solid), p99 (dashed)" font ",12"
if (LOGY) { set logscale y; set ylabel "TTFT ms (log scale)"; set yrange [*:*] } \
else { set ylabel "TTFT ms"; set yrange [0:*] }
plot for [i=0:N-1] "$tmp/s".i.".dat" using 1:3 with linespoints lw 2 pt 7 ps 1.5 lc rgb word(COLORS, i % 6 + 1) title label(i)." p50", \
     for [i=0:N-1] "$tmp/s".i.".dat" using 1:4 with linespoints lw 2 pt 6 ps 1.5 dt 2 lc rgb word(COLORS, i % 6 + 1) title label(i)." p99"
unset multiplot
GP
echo "plot-prefix.sh: wrote $out"
