#!/usr/bin/env bash
# fleet.sh - N sparrow replicas behind HAProxy on one box (a development and
# benchmark stand-in for sparrow@.service + sparrow-lb.service).
#
#   scripts/fleet.sh start -m MODEL [-n 3] [--base-port 8081] [--lb 127.0.0.1:8080]
#                          [--stats 127.0.0.1:8404] [--mode bounded|chash|rr]
#                          [--run-dir DIR] [--foreground] [-- SERVE-FLAGS...]
#   scripts/fleet.sh stop   [--run-dir DIR]
#   scripts/fleet.sh status [--run-dir DIR]
#
# start: replica k (1..N) is `sparrow serve -m MODEL --host 127.0.0.1 --port
#   BASE+k-1 -t 1 SERVE-FLAGS` (later flags win, so `-- -t 2` overrides), then
#   HAProxy with config/haproxy/sparrow.cfg and SPARROW_R1..N, SPARROW_LB_BIND,
#   SPARROW_LB_STATS and SPARROW_LB_MODE set (other SPARROW_LB_* pass through
#   from the environment). Waits (bounded: --wait-s, default 120) for every
#   replica's /health and for HAProxy to see them all UP; exits 1 and stops
#   what it started if that does not happen. Pids and logs go to the run dir
#   (default ${XDG_RUNTIME_DIR:-/tmp}/sparrow-fleet). With --foreground it
#   then waits and stops the fleet on Ctrl-C / SIGTERM.
# stop: SIGTERM to every replica (each drains its in-flight requests), waits
#   up to 60 s (then SIGKILL), then stops HAProxy.
# Environment: SPARROW_BIN (default ./sparrow), HAPROXY (default haproxy),
#   SPARROW_LB_CFG (default config/haproxy/sparrow.cfg next to this script).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${SPARROW_BIN:-./sparrow}
haproxy=${HAPROXY:-haproxy}
cfg=${SPARROW_LB_CFG:-$here/config/haproxy/sparrow.cfg}
run_dir=${XDG_RUNTIME_DIR:-/tmp}/sparrow-fleet
n=3; base_port=8081; lb=127.0.0.1:8080; stats=127.0.0.1:8404; mode=bounded
model=""; foreground=0; wait_s=120; serve_args=()

die() { echo "fleet: $*" >&2; exit 1; }
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

cmd=${1:-}; [ -n "$cmd" ] || usage
shift
while [ $# -gt 0 ]; do
    case $1 in
        -m|--model) model=$2; shift 2 ;;
        -n) n=$2; shift 2 ;;
        --base-port) base_port=$2; shift 2 ;;
        --lb) lb=$2; shift 2 ;;
        --stats) stats=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --run-dir) run_dir=$2; shift 2 ;;
        --foreground) foreground=1; shift ;;
        --wait-s) wait_s=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        --) shift; serve_args=("$@"); break ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

http_status() {   # URL -> HTTP status, or 000
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_fleet() {
    [ -d "$run_dir" ] || { echo "fleet: nothing running in $run_dir"; return 0; }
    local pids=() f
    for f in "$run_dir"/replica-*.pid; do
        [ -f "$f" ] || continue
        if alive "$f"; then kill -TERM "$(cat "$f")" 2>/dev/null || true; pids+=("$(cat "$f")"); fi
    done
    local deadline=$((SECONDS + 60))
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then echo "fleet: replica pid $p did not drain in 60 s; SIGKILL" >&2; kill -KILL "$p" 2>/dev/null || true; fi
    done
    if alive "$run_dir/haproxy.pid"; then
        local hp; hp=$(cat "$run_dir/haproxy.pid")
        kill -TERM "$hp" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$hp" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$hp" 2>/dev/null && kill -KILL "$hp" 2>/dev/null || true
    fi
    rm -f "$run_dir"/*.pid
    echo "fleet: stopped (logs in $run_dir)"
}

status_fleet() {
    local f
    for f in "$run_dir"/replica-*.pid "$run_dir/haproxy.pid"; do
        [ -f "$f" ] || continue
        if alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"
        else echo "$(basename "$f" .pid): not running"; fi
    done
    [ -f "$run_dir/stats" ] && curl -s -m 2 "http://$(cat "$run_dir/stats")/stats;csv" 2>/dev/null \
        | awk -F, '$1=="sparrow" && $2!="BACKEND" && $2!="FRONTEND" {print "  " $2 ": " $18 ", " $5 " in flight, " $8 " total"}'
    return 0
}

start_fleet() {
    [ -n "$model" ] || die "start needs -m MODEL"
    [ -f "$model" ] || die "no model file $model"
    command -v "$haproxy" >/dev/null || die "haproxy not found (Debian: apt-get install haproxy)"
    [ -x "$bin" ] || die "sparrow binary $bin not executable (set SPARROW_BIN)"
    { [ "$n" -ge 1 ] && [ "$n" -le 8 ]; } || die "-n must be 1..8 (the config has 8 replica slots)"
    mkdir -p "$run_dir"
    for f in "$run_dir"/replica-*.pid "$run_dir/haproxy.pid"; do
        alive "$f" && die "a fleet is already running in $run_dir (fleet.sh stop first)"
    done
    rm -f "$run_dir"/*.pid

    local k port envs=()
    for k in $(seq 1 "$n"); do
        port=$((base_port + k - 1))
        "$bin" serve -m "$model" --host 127.0.0.1 --port "$port" -t 1 "${serve_args[@]}" \
            > "$run_dir/replica-$k.log" 2>&1 &
        echo $! > "$run_dir/replica-$k.pid"
        envs+=("SPARROW_R$k=127.0.0.1:$port")
    done
    # bounded wait for every replica's /health
    local deadline=$((SECONDS + wait_s))
    for k in $(seq 1 "$n"); do
        port=$((base_port + k - 1))
        until [ "$(http_status "http://127.0.0.1:$port/health")" = 200 ]; do
            alive "$run_dir/replica-$k.pid" || { tail -5 "$run_dir/replica-$k.log" >&2; stop_fleet; die "replica $k exited"; }
            [ $SECONDS -lt $deadline ] || { stop_fleet; die "replica $k not healthy after ${wait_s}s"; }
            sleep 0.2
        done
    done
    env "${envs[@]}" SPARROW_LB_BIND="$lb" SPARROW_LB_STATS="$stats" SPARROW_LB_MODE="$mode" \
        "$haproxy" -db -f "$cfg" > "$run_dir/haproxy.log" 2>&1 &
    echo $! > "$run_dir/haproxy.pid"
    echo "$stats" > "$run_dir/stats"
    # bounded wait for HAProxy to listen and to see every replica UP
    local up=0
    while [ $SECONDS -lt $deadline ]; do
        alive "$run_dir/haproxy.pid" || { cat "$run_dir/haproxy.log" >&2; stop_fleet; die "haproxy exited"; }
        if [ "$(http_status "http://$lb/lb-health")" = 200 ]; then
            up=$(curl -s -m 2 "http://$stats/stats;csv" | awk -F, '$1=="sparrow" && $2!="BACKEND" && $18=="UP"' | wc -l)
            [ "$up" -eq "$n" ] && break
        fi
        sleep 0.2
    done
    [ "$up" -eq "$n" ] || { stop_fleet; die "haproxy sees $up of $n replicas UP after ${wait_s}s"; }
    echo "fleet: $n replicas on 127.0.0.1:$base_port..$((base_port + n - 1)) behind http://$lb (mode $mode; stats http://$stats/stats; logs $run_dir)"
    if [ "$foreground" -eq 1 ]; then
        trap 'stop_fleet; exit 0' INT TERM
        while alive "$run_dir/haproxy.pid"; do sleep 1; done
        stop_fleet
    fi
}

case $cmd in
    start) start_fleet ;;
    stop) stop_fleet ;;
    status) status_fleet ;;
    *) usage ;;
esac
