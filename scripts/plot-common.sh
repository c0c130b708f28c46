# plot-common.sh - the start every scripts/plot-*.sh shares. Source it, then
#   plot_start DEFAULT_OUT MIN_FILES MAX_FILES "$@"      (MAX_FILES 0: any number)
# takes `-o OUT` (else DEFAULT_OUT) into $out and the input files into the
# array $files (each must exist), checks for gnuplot, and makes the directory
# $tmp, removed at exit. Wrong usage prints the calling script's header
# comment to stderr and exits 2; a missing file or gnuplot exits 1.
plot_start() {
    local default=$1 min=$2 max=$3 name f
    name=$(basename "$0")
    shift 3
    out=$default
    if [ "${1:-}" = "-o" ]; then
        [ $# -ge 2 ] || { echo "$name: -o needs a file" >&2; exit 2; }
        out=$2
        shift 2
    fi
    if [ $# -lt "$min" ] || { [ "$max" -gt 0 ] && [ $# -gt "$max" ]; }; then
        awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$0" >&2
        exit 2
    fi
    files=("$@")
    for f in "${files[@]}"; do [ -f "$f" ] || { echo "$name: $f: no such file" >&2; exit 1; }; done
    command -v gnuplot >/dev/null || { echo "$name: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
}
