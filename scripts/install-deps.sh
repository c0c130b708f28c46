#!/usr/bin/env bash
# install-deps.sh - install the Debian packages sparrow builds and tests with.
# Idempotent: does nothing (and needs no network) when every package is present.
set -euo pipefail
pkgs=(build-essential pkg-config libmicrohttpd-dev libjansson-dev libopenblas-dev
      libsystemd-dev systemd clang libclang-rt-dev python3 python3-requests curl
      prometheus apache2-utils wrk debhelper lintian gnuplot-nox man-db groff-base haproxy)
# node + npm run the official openai client in the integration tests; use
# whatever node the machine has, else Debian's.
command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
