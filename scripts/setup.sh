#!/usr/bin/env bash
# Installs what weft and its tests need on a fresh Debian machine, then builds weft:
# the system tools the end-to-end tests and the bench drive, the npm packages, the native
# addon (node-gyp, through npm's install script) and the TypeScript build (npm's prepare script).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(iproute2 iputils-ping iperf3 iptables ipset nftables tcpdump util-linux procps python3 make g++)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

npm ci --no-audit --no-fund
