#!/usr/bin/env bash
# plot-fairness.sh - the fairness picture: each client's service (the policy's
# normalized charge, from /metrics) over time, one panel per scheduling policy.
# Usage: scripts/plot-fairness.sh [-o OUT.png] RESULTS.json
#   RESULTS.json  scripts/fair-bench.py --policies ... --json-out output (its
#                 "runs" hold each policy's service_over_time samples); the
#                 title names its command line and date.
# Default OUT: docs/img/fairness.png. Needs gnuplot (Debian: gnuplot-nox), python3.
set -euo pipefail
. "$(dirname "$0")/plot-common.sh"
plot_start docs/img/fairness.png 1 1 "$@"
in=${files[0]}
python3 - "$in" "$tmp" <<'PY' || { echo "plot-fairness.sh: $in holds no service samples" >&2; exit 1; }
import json, sys, os
res = json.load(open(sys.argv[1]))
runs = res.get("runs", {})
policies = [p for p in runs if runs[p].get("service_over_time")]
if not policies:
    sys.exit(1)
clients = sorted({c for p in policies for _, svc in runs[p]["service_over_time"] for c in svc})
for p in policies:
    with open(os.path.join(sys.argv[2], p + ".dat"), "w") as f:
        for t, svc in runs[p]["service_over_time"]:
            f.write("%s %s\n" % (t, " ".join(str(svc.get(c, "NaN")) for c in clients)))
cmd = res.get("command") or " ".join(res.get("argv", [])) or "scripts/fair-bench.py"
date = (res.get("date") or "")[:10]
with open(os.path.join(sys.argv[2], "meta"), "w") as f:
    f.write("%s\n%s\n%s\n%s\n" % (" ".join(policies), " ".join(clients), cmd.replace('"', "'"), date))
PY
policies=$(sed -n 1p "$tmp/meta"); clients=$(sed -n 2p "$tmp/meta")
cmd=$(sed -n 3p "$tmp/meta"); date=$(sed -n 4p "$tmp/meta")
[ -n "$date" ] || date=$(date -r "$in" +%F)
n=$(echo "$policies" | wc -w)
{
    echo "set terminal pngcairo size $((420 * n)),420 font ',9'"
    echo "set output '$out'"
    echo "set termoption noenhanced"
    echo "set multiplot layout 1,$n title \"per-client service over time: ${cmd:0:220} ($date)\" font ',9'"
    echo "set xlabel 'seconds'; set ylabel 'service (cost / weight)'; set grid; set key top left"
    for p in $policies; do
        echo "set title '$p'"
        plot="plot"; col=2
        for c in $clients; do plot="$plot '$tmp/$p.dat' using 1:$col with lines lw 2 title '$c',"; col=$((col + 1)); done
        echo "${plot%,}"
    done
    echo "unset multiplot"
} > "$tmp/plot.gp"
gnuplot "$tmp/plot.gp"
echo "plot-fairness.sh: wrote $out"
