#!/usr/bin/env bash
# test_systemd_units.sh - the files in systemd/ are valid for the host's systemd.
# Usage: bash tests/cli/test_systemd_units.sh   (from the repo root)
# Checks: `systemd-analyze verify` of sparrow.service + sparrow.socket prints
# nothing about our units and exits 0 (it only warns, exit 0, on unknown keys
# and bad values, so its output is read too; a negative control proves that
# reading works on this systemd version); the hardening keeps its exposure
# score (`systemd-analyze security --offline`) at or below 2.5; the sysusers
# and tmpfiles snippets parse (and, as root, apply into a scratch root).
# Output: what failed; exit 0 = pass. Needs the Debian package `systemd`.
set -euo pipefail

units=$PWD/systemd   # absolute: systemd-sysusers/-tmpfiles --root resolve paths inside the root
fail=0
bad() { echo "FAIL: $*"; fail=1; }

if ! command -v systemd-analyze >/dev/null; then
    echo "FAIL: systemd-analyze not found (Debian: apt-get install systemd)"
    exit 1
fi
for f in sparrow.service sparrow.socket sparrow.sysusers sparrow.tmpfiles; do
    [ -f "$units/$f" ] || { echo "FAIL: systemd/$f missing (run from the repo root)"; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# /usr/bin/sparrow is not installed here and verify rejects a missing
# ExecStart binary, so the copies point at one that exists; nothing runs.
grep -q '^ExecStart=/usr/bin/sparrow serve ' "$units/sparrow.service" \
    || bad "sparrow.service: ExecStart is not '/usr/bin/sparrow serve ...'"
mkdir "$tmp/ok" "$tmp/broken"
sed 's|^ExecStart=/usr/bin/sparrow |ExecStart=/bin/true |' "$units/sparrow.service" \
    > "$tmp/ok/sparrow.service"
cp "$units/sparrow.socket" "$tmp/ok/"

# verify DIR: print what verify says about our units; fail if it says anything
# or exits non-zero. --recursive-errors=no: the host's own units (network.target,
# multi-user.target, ...) may warn, that is not ours to fix.
verify() {
    local out rc=0
    out=$(cd "$1" && systemd-analyze verify --man=no --recursive-errors=no \
          ./sparrow.service ./sparrow.socket 2>&1) || rc=$?
    local ours
    ours=$(printf '%s\n' "$out" | grep -F -e sparrow -e "$1" || true)
    if [ -n "$ours" ] || [ "$rc" -ne 0 ]; then
        printf '%s\n' "${ours:-$out}"
        echo "(systemd-analyze verify exit $rc)"
        return 1
    fi
}

if ! verify "$tmp/ok"; then bad "systemd-analyze verify reports problems in our units"; fi

# Negative control: an unknown key and a bad value must be caught.
cp "$tmp/ok/sparrow.service" "$tmp/ok/sparrow.socket" "$tmp/broken/"
sed -i 's/^WatchdogSec=.*/WatchdogSec=thirty/' "$tmp/broken/sparrow.service"
sed -i 's/^\[Socket\]/[Socket]\nListenStreamm=127.0.0.1:1/' "$tmp/broken/sparrow.socket"
if verify "$tmp/broken" >/dev/null; then
    bad "negative control: verify of deliberately broken units passed (test is blind)"
fi

# Settings the daemon's code relies on.
for want in '^Type=notify$' '^NotifyAccess=main$' '^WatchdogSec=' '^User=sparrow$' \
            '^KillSignal=SIGTERM$'; do
    grep -qE "$want" "$units/sparrow.service" || bad "sparrow.service: no line matching $want"
done
grep -qE '^Accept=no$' "$units/sparrow.socket" || bad "sparrow.socket: Accept=no missing"

# Hardening must not regress: exposure 0.0 (best) .. 10.0; threshold is x10.
if ! out=$(cd "$tmp/ok" && systemd-analyze security --offline=true --threshold=25 \
           ./sparrow.service 2>&1); then
    printf '%s\n' "$out" | tail -3
    bad "sparrow.service: exposure level above 2.5"
fi

# sysusers.d / tmpfiles.d snippets.
mkdir -p "$tmp/root/etc"
if [ "$(id -u)" -eq 0 ]; then
    # Create the user in the scratch root, then the directories with it.
    systemd-sysusers --root="$tmp/root" "$units/sparrow.sysusers" >/dev/null 2>"$tmp/err" \
        || { cat "$tmp/err"; bad "sparrow.sysusers does not apply"; }
    grep -q '^sparrow:.*:/var/lib/sparrow:' "$tmp/root/etc/passwd" 2>/dev/null \
        || bad "sparrow.sysusers: no user sparrow with home /var/lib/sparrow"
    systemd-tmpfiles --root="$tmp/root" --create "$units/sparrow.tmpfiles" 2>"$tmp/err" \
        || { cat "$tmp/err"; bad "sparrow.tmpfiles does not apply"; }
    [ -d "$tmp/root/var/lib/sparrow/models" ] \
        || bad "sparrow.tmpfiles: /var/lib/sparrow/models not created"
else
    systemd-sysusers --dry-run --root="$tmp/root" "$units/sparrow.sysusers" \
        >/dev/null 2>"$tmp/err" || { cat "$tmp/err"; bad "sparrow.sysusers does not parse"; }
    echo "note: not root, tmpfiles snippet not applied"
fi

[ "$fail" -eq 0 ] && echo "ok: systemd units"
exit "$fail"
