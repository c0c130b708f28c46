#!/usr/bin/env bash
# test_haproxy_units.sh - the scale-out files are valid: systemd/sparrow@.service
# and systemd/sparrow-lb.service for the host's systemd, config/haproxy/
# sparrow.cfg for the host's HAProxy.
# Usage: bash tests/cli/test_haproxy_units.sh   (from the repo root)
# Checks: `systemd-analyze verify` of an instance of the template
# (sparrow@8081.service) and of sparrow-lb.service prints nothing about our
# units and exits 0 (copies with ExecStart pointing at an existing binary, as
# in test_systemd_units.sh; a negative control proves the output is read); the
# template keeps sparrow.service's hardening (same [Service] lines apart from
# ExecStart) and its exposure score stays <= 2.5; `haproxy -c` accepts the
# config in its three modes and with an explicit replica list, and rejects an
# unknown mode. Output: what failed; exit 0 = pass. Needs the Debian packages
# `systemd` and `haproxy`.
set -euo pipefail

units=$PWD/systemd
cfg=$PWD/config/haproxy/sparrow.cfg
fail=0
bad() { echo "FAIL: $*"; fail=1; }

for tool in systemd-analyze haproxy; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (Debian: apt-get install ${tool%%-*})"; exit 1; }
done
for f in "$units/sparrow@.service" "$units/sparrow-lb.service" "$units/sparrow.service" "$cfg"; do
    [ -f "$f" ] || { echo "FAIL: $f missing (run from the repo root)"; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/ok" "$tmp/broken"

# Neither /usr/bin/sparrow nor (maybe) /usr/sbin/haproxy exists where this
# runs, and verify rejects a missing ExecStart binary: point the copies at
# /bin/true; nothing runs.
grep -q '^ExecStart=/usr/bin/sparrow serve --config /etc/sparrow/sparrow.conf --port %i$' "$units/sparrow@.service" \
    || bad "sparrow@.service: ExecStart is not '/usr/bin/sparrow serve --config /etc/sparrow/sparrow.conf --port %i'"
grep -q '^ExecStart=/usr/sbin/haproxy ' "$units/sparrow-lb.service" \
    || bad "sparrow-lb.service: ExecStart is not '/usr/sbin/haproxy ...'"
sed 's|^ExecStart=/usr/bin/sparrow |ExecStart=/bin/true |' "$units/sparrow@.service" > "$tmp/ok/sparrow@.service"
sed -E 's#^(ExecStart|ExecStartPre|ExecReload)=/usr/sbin/haproxy #\1=/bin/true #' "$units/sparrow-lb.service" \
    > "$tmp/ok/sparrow-lb.service"

verify() {   # DIR: fail if verify says anything about our units or exits non-zero
    local out rc=0
    out=$(cd "$1" && systemd-analyze verify --man=no --recursive-errors=no \
          ./sparrow@8081.service ./sparrow-lb.service 2>&1) || rc=$?
    local ours
    ours=$(printf '%s\n' "$out" | grep -F -e sparrow -e "$1" || true)
    if [ -n "$ours" ] || [ "$rc" -ne 0 ]; then
        printf '%s\n' "${ours:-$out}"
        echo "(systemd-analyze verify exit $rc)"
        return 1
    fi
}
# verify loads an instance from the template file next to it
ln -s sparrow@.service "$tmp/ok/sparrow@8081.service"
if ! verify "$tmp/ok"; then bad "systemd-analyze verify reports problems in our units"; fi

# Negative control: an unknown key in each unit must be caught.
cp "$tmp/ok/sparrow@.service" "$tmp/ok/sparrow-lb.service" "$tmp/broken/"
ln -s sparrow@.service "$tmp/broken/sparrow@8081.service"
sed -i 's/^\[Service\]/[Service]\nRestartt=always/' "$tmp/broken/sparrow@.service"
sed -i 's/^Type=notify$/Type=notifyy/' "$tmp/broken/sparrow-lb.service"
if verify "$tmp/broken" >/dev/null; then
    bad "negative control: verify of deliberately broken units passed (test is blind)"
fi

# The template is sparrow.service with the port: same [Service] settings.
svc() { sed -n '/^\[Service\]/,/^\[/p' "$1" | grep -vE '^(#|$|\[)' | grep -v '^ExecStart=' | sort; }
if ! diff <(svc "$units/sparrow.service") <(svc "$units/sparrow@.service") > "$tmp/diff"; then
    cat "$tmp/diff"; bad "sparrow@.service: [Service] differs from sparrow.service beyond ExecStart"
fi
for want in '^Type=notify$' '^User=haproxy$' '^NoNewPrivileges=yes$' '^ProtectSystem=strict$' \
            '^CapabilityBoundingSet=$' '^SystemCallFilter=@system-service$'; do
    grep -qE "$want" "$units/sparrow-lb.service" || bad "sparrow-lb.service: no line matching $want"
done
for u in sparrow@8081.service sparrow-lb.service; do
    if ! out=$(cd "$tmp/ok" && systemd-analyze security --offline=true --threshold=25 "./$u" 2>&1); then
        printf '%s\n' "$out" | tail -3
        bad "$u: exposure level above 2.5"
    fi
done

# HAProxy config: valid in every mode, with an explicit replica list, and
# an unknown mode is refused (the .alert guard works).
check_cfg() { env "$@" haproxy -c -q -f "$cfg" > "$tmp/hap" 2>&1; }
for mode in bounded chash rr; do
    check_cfg SPARROW_LB_MODE=$mode || { cat "$tmp/hap"; bad "haproxy -c rejects sparrow.cfg in mode $mode"; }
done
check_cfg SPARROW_R1=127.0.0.1:9001 SPARROW_R2=127.0.0.1:9002 SPARROW_R3=127.0.0.1:9003 SPARROW_R4=127.0.0.1:9004 \
    SPARROW_LB_BIND=127.0.0.1:9000 SPARROW_LB_KEY_BYTES=1024 SPARROW_LB_CLIENT_MAX_INFLIGHT=8 \
    || { cat "$tmp/hap"; bad "haproxy -c rejects sparrow.cfg with 4 explicit replicas"; }
if check_cfg SPARROW_LB_MODE=leastconn; then bad "haproxy -c accepts SPARROW_LB_MODE=leastconn"; fi
# Settings the routing and the drain rely on.
for want in '^ *hash-type consistent$' '^ *hash-balance-factor ' '^ *option httpchk GET /health$' \
            '^ *http-check expect status 200$' '^ *option http-buffer-request$' '^ *retry-on .*503'; do
    grep -qE "$want" "$cfg" || bad "sparrow.cfg: no line matching $want"
done
grep -qE '^[^#]*on-marked-down +shutdown-sessions' "$cfg" \
    && bad "sparrow.cfg: on-marked-down shutdown-sessions would cut a draining replica's streams"

[ "$fail" -eq 0 ] && echo "ok: haproxy units and config"
exit "$fail"
