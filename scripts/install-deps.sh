#!/usr/bin/env bash
# Installs the Debian 12 packages npsd needs to build, test and run the demo,
# skipping what is already there. Safe to run repeatedly.
set -euo pipefail

pkgs=(build-essential cmake pkg-config clang
      librdkafka-dev libjansson-dev libhiredis-dev libcmocka-dev libmicrohttpd-dev
      redis-server redis-tools python3 python3-redis python3-confluent-kafka
      python3-yaml)
pkgs+=(prometheus)  # promtool check metrics on npsd's /metrics (tests/integration/it_metrics.py)
pkgs+=(python3-jsonschema)  # message schemas (docs/schemas) checked in the tests
pkgs+=(dpkg-dev systemd groff-base man-db adduser)  # it_package: cpack's dpkg-shlibdeps, systemd-analyze verify, man pages, postinst
pkgs+=(tmux)  # it_downstream runs npsctl top in a terminal and captures its screen

missing=()
for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
