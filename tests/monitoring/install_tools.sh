#!/usr/bin/env bash
# Install the Prometheus tools the monitoring tests run, where they are missing:
#   prometheus, promtool          (Debian package `prometheus`)
#   alertmanager, amtool          (Debian package `prometheus-alertmanager`;
#                                  the server binary is `prometheus-alertmanager`)
#
# Idempotent: does nothing when every tool is already on PATH, so it is safe to
# run before every test session. Needs root (CI runs as root on a fresh Debian
# machine); as another user it only reports what is missing and exits 1.
#
# The Debian packages ship systemd units and would start both daemons on a
# machine with an init system. The tests start their own processes on free
# ports, so we keep the packaged services from starting: a temporary
# policy-rc.d (the standard Debian mechanism, see invoke-rc.d(8)) denies
# service starts for the duration of the install, and is removed afterwards
# unless one was already there.
set -euo pipefail

have() {  # any of the named commands is on PATH
    local name
    for name in "$@"; do command -v "$name" >/dev/null 2>&1 && return 0; done
    return 1
}

missing_pkgs=()
have prometheus && have promtool || missing_pkgs+=(prometheus)
have prometheus-alertmanager alertmanager && have amtool || missing_pkgs+=(prometheus-alertmanager)

if [ ${#missing_pkgs[@]} -eq 0 ]; then
    echo "install_tools: prometheus, promtool, prometheus-alertmanager and amtool are installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_tools: missing ${missing_pkgs[*]} and not root: run as root or apt-get install ${missing_pkgs[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_tools: missing ${missing_pkgs[*]} and no apt-get on this machine" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# written by tests/monitoring/install_tools.sh: no service starts during the install\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "install_tools: installing ${missing_pkgs[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null

for tool in prometheus promtool amtool; do
    have "$tool" || { echo "install_tools: $tool still missing after the install" >&2; exit 1; }
done
have prometheus-alertmanager alertmanager || { echo "install_tools: alertmanager still missing after the install" >&2; exit 1; }
echo "install_tools: installed ${missing_pkgs[*]}"
