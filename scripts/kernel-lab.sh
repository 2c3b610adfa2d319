#!/usr/bin/env bash
# Runs test/kernel-lab/ where the kernel has what those tests need (ESP with rfc4106(gcm(aes)),
# full netfilter): inside the kernel lab's VM (run-in-vm, a stock Debian kernel) when it is
# here, else on this host if its own kernel can, else it says why nothing ran.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
run=(npx vitest run --config vitest.kernel-lab.config.ts "$@")

find_vm() {
  local candidate
  for candidate in "${WEFT_RUN_IN_VM:-}" "$root/../shared/kernel-lab/run-in-vm" \
    /work/shared/kernel-lab/run-in-vm; do
    if [ -n "$candidate" ] && [ -f "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if vm="$(find_vm)"; then
  echo "kernel-lab: running test/kernel-lab/ in a VM ($vm)"
  # The guest has no udev: weft's TAP needs the tun device node made by hand.
  # Through bash: a copy of shared/ may have lost its execute bits.
  exec bash "$vm" --share "$root" --cwd "$root" --mem 2G --timeout 2400 \
    --modules "esp4 xfrm_user tun" -- sh -c \
    'mkdir -p /dev/net && { [ -e /dev/net/tun ] || mknod /dev/net/tun c 10 200; } && exec "$@"' \
    kernel-lab "${run[@]}"
fi

host_problem="$(node --input-type=module -e '
  const { probeEsp } = await import(process.argv[1] + "/dist/fastdp/xfrm-ops.js");
  console.log(probeEsp() ?? "");' "$root")"
if [ -z "$host_problem" ]; then
  echo "kernel-lab: no run-in-vm here, but this host's kernel has ESP: running on the host"
  exec "${run[@]}"
fi
echo "kernel-lab: SKIPPED, nothing here can run test/kernel-lab/: no run-in-vm found" \
  "(set WEFT_RUN_IN_VM, or put it at ../shared/kernel-lab/run-in-vm) and the host $host_problem"
