#!/usr/bin/env bash
# test_deb.sh - the Debian package (make deb) installs what it should.
# Usage: bash tests/cli/test_deb.sh   (from the repo root)
# Builds build/deb/sparrow_VERSION_amd64.deb with `make deb` unless one newer
# than every input (sources, debian/, systemd/, config, man pages) is there;
# installs it into a scratch root (as root: `dpkg --root` with the maintainer
# scripts run chrootless, so the sysusers/tmpfiles integration really runs;
# otherwise `dpkg-deb -x`); checks the files, the conffile, that nothing is
# enabled on install, the units with `systemd-analyze verify --root` (the
# installed /usr/bin/sparrow is the ExecStart), the packaged binary's
# --version and man pages; as root also that purge removes /etc/sparrow and
# /var/lib/sparrow. Output: what failed; exit 0 = pass.
# Needs the Debian packages dpkg-dev debhelper fakeroot systemd (and lintian
# for the lintian check, skipped with a note when absent).
set -euo pipefail
fail=0
bad() { echo "FAIL: $*"; fail=1; }
for t in dpkg-buildpackage dh dpkg-deb systemd-analyze; do
    command -v "$t" >/dev/null || { echo "FAIL: $t not found (apt-get install dpkg-dev debhelper fakeroot systemd)"; exit 1; }
done
[ -f debian/control ] || { echo "FAIL: run from the repo root"; exit 1; }

v=$(dpkg-parsechangelog -S Version)
deb=build/deb/sparrow_${v}_amd64.deb
# Reuse a package newer than every input; else build one (about 20 s).
if [ ! -f "$deb" ] || [ -n "$(find Makefile debian systemd config server engine kernels scheduler docs/man \
        -newer "$deb" -type f -not -path 'debian/sparrow/*' -not -path 'debian/.debhelper/*' \
        -not -name '*.substvars' -not -name 'files' -not -name 'debhelper-build-stamp' \
        -not -name '*.debhelper' -not -name '*.log' -print -quit 2>/dev/null)" ]; then
    make --no-print-directory deb > build/deb.log 2>&1 || { tail -30 build/deb.log; echo "FAIL: make deb"; exit 1; }
fi
[ -f "$deb" ] || { echo "FAIL: $deb not built"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
dpkg-deb -e "$deb" "$tmp/DEBIAN"
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
    touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
    # --force-depends: the scratch root has no libc; the scripts run on the
    # host with DPKG_ROOT=$root (systemd-sysusers/-tmpfiles --root).
    dpkg --root="$root" --force-script-chrootless --force-depends -i "$deb" > "$tmp/dpkg.log" 2>&1 \
        || { cat "$tmp/dpkg.log"; bad "dpkg --root -i failed"; }
    installed=1
else
    dpkg-deb -x "$deb" "$root"
    installed=0
    echo "note: not root, package extracted (maintainer scripts not run)"
fi

# Files.
[ -x "$root/usr/bin/sparrow" ] || bad "/usr/bin/sparrow missing or not executable"
for u in systemd/*.service systemd/*.socket; do
    [ -f "$root/lib/systemd/system/$(basename "$u")" ] || bad "unit $(basename "$u") not in /lib/systemd/system"
done
cmp -s "$root/usr/lib/sysusers.d/sparrow.conf" systemd/sparrow.sysusers || bad "sysusers.d/sparrow.conf missing or differs"
cmp -s "$root/usr/lib/tmpfiles.d/sparrow.conf" systemd/sparrow.tmpfiles || bad "tmpfiles.d/sparrow.conf missing or differs"
cmp -s "$root/etc/sparrow/sparrow.conf" config/sparrow.conf || bad "/etc/sparrow/sparrow.conf missing or differs from config/sparrow.conf"
grep -qx /etc/sparrow/sparrow.conf "$tmp/DEBIAN/conffiles" || bad "/etc/sparrow/sparrow.conf is not a conffile"
for p in man1/sparrow.1 man5/sparrow.conf.5; do
    if [ -f "$root/usr/share/man/$p.gz" ]; then
        zcat "$root/usr/share/man/$p.gz" | cmp -s - "docs/man/$(basename "$p")" || bad "man page $p differs from docs/man"
    else
        bad "man page /usr/share/man/$p.gz missing"
    fi
done

# Nothing enabled or started on a fresh install: every enable in postinst is
# under was-enabled (re-enable on upgrade what the operator enabled).
n_enable=$(grep -c 'deb-systemd-helper enable' "$tmp/DEBIAN/postinst" || true)
n_guard=$(grep -c 'deb-systemd-helper --quiet was-enabled' "$tmp/DEBIAN/postinst" || true)
[ "$n_enable" -eq "$n_guard" ] || bad "postinst enables units unconditionally"
grep -q 'systemctl.* enable\|systemctl.* start' "$tmp/DEBIAN/postinst" && bad "postinst calls systemctl enable/start"
grep -q 'deb-systemd-invoke stop' "$tmp/DEBIAN/prerm" 2>/dev/null || bad "prerm does not stop the units on removal"
grep -q 'systemd-sysusers' "$tmp/DEBIAN/postinst" || bad "postinst does not create the user (systemd-sysusers)"
grep -q '/etc/sparrow' "$tmp/DEBIAN/postrm" && grep -q '/var/lib/sparrow' "$tmp/DEBIAN/postrm" \
    || bad "postrm purge does not remove /etc/sparrow and /var/lib/sparrow"

if [ "$installed" -eq 1 ]; then
    uid=$(awk -F: '$1 == "sparrow" {print $3 ":" $6}' "$root/etc/passwd" 2>/dev/null)
    [ "${uid#*:}" = /var/lib/sparrow ] || bad "postinst: no user sparrow with home /var/lib/sparrow in the root"
    [ -d "$root/var/lib/sparrow/models" ] || bad "postinst: /var/lib/sparrow/models not created (tmpfiles)"
    [ "$(stat -c %u "$root/var/lib/sparrow" 2>/dev/null)" = "${uid%%:*}" ] || bad "/var/lib/sparrow not owned by sparrow"
    ls -A "$root/var/lib/systemd/deb-systemd-helper-enabled" 2>/dev/null | grep -q 'wants' \
        && bad "a unit was enabled on install"
fi

# Units as installed: verify resolves ExecStart inside the root, so the
# packaged binary is what is checked. sparrow-lb.service (HAProxy) is checked
# by test_haproxy_units.sh, where haproxy is installed.
units=(/lib/systemd/system/sparrow.service /lib/systemd/system/sparrow.socket)
[ -f "$root/lib/systemd/system/sparrow@.service" ] && units+=(/lib/systemd/system/sparrow@8081.service)
out=$(systemd-analyze verify --man=no --recursive-errors=no --root="$root" "${units[@]}" 2>&1) || { echo "$out"; bad "systemd-analyze verify failed"; }
ours=$(printf '%s\n' "$out" | grep -F -e sparrow -e "$root" || true)
[ -z "$ours" ] || { echo "$ours"; bad "systemd-analyze verify reports problems in the installed units"; }
# Negative control: verify --root must see a bad value in the installed unit.
cp "$root/lib/systemd/system/sparrow.service" "$tmp/sparrow.service.orig"
sed -i 's/^WatchdogSec=.*/WatchdogSec=thirty/' "$root/lib/systemd/system/sparrow.service"
neg=$(systemd-analyze verify --man=no --recursive-errors=no --root="$root" /lib/systemd/system/sparrow.service 2>&1 || true)
printf '%s\n' "$neg" | grep -q 'thirty' || bad "negative control: verify --root did not see a broken unit (test is blind)"
cp "$tmp/sparrow.service.orig" "$root/lib/systemd/system/sparrow.service"

# The packaged binary runs and says what it is.
if ver=$("$root/usr/bin/sparrow" --version 2>&1); then
    printf '%s\n' "$ver" | head -1 | grep -qx "sparrow ${v%%-*}" || bad "--version says '$(printf '%s' "$ver" | head -1)', package is $v"
    printf '%s\n' "$ver" | grep -q '^commit ' || bad "--version: no commit line"
    printf '%s\n' "$ver" | grep -q '^cpu: .*AVX2 = [01]' || bad "--version: no CPU features line"
else
    echo "$ver"; bad "packaged sparrow --version failed"
fi

if command -v lintian >/dev/null; then
    lout=$(lintian --pedantic "$deb" 2>&1 | grep -v 'running with root privileges' || true)
    [ -z "$lout" ] || { echo "$lout"; bad "lintian is not clean (fix, or override with a comment in debian/sparrow.lintian-overrides)"; }
else
    echo "note: lintian not installed, not run"
fi

# Purge leaves nothing of ours in the root (the user stays, as Debian does).
if [ "$installed" -eq 1 ]; then
    echo "model = /x" >> "$root/etc/sparrow/sparrow.conf"    # a changed conffile goes too
    touch "$root/var/lib/sparrow/models/m.gguf"
    dpkg --root="$root" --force-script-chrootless --force-depends --purge sparrow > "$tmp/dpkg.log" 2>&1 \
        || { cat "$tmp/dpkg.log"; bad "dpkg --purge failed"; }
    left=$(cd "$root" && find . -not -path './var/lib/dpkg*' -not -path './etc/passwd*' -not -path './etc/group*' \
           -not -path './etc/shadow*' -not -path './etc/gshadow*' -not -name '.pwd.lock' -type f)
    [ -z "$left" ] || { echo "$left"; bad "files left after purge"; }
    [ ! -e "$root/etc/sparrow" ] && [ ! -e "$root/var/lib/sparrow" ] || bad "purge left /etc/sparrow or /var/lib/sparrow"
fi

[ "$fail" -eq 0 ] && echo "ok: debian package $v"
exit "$fail"
