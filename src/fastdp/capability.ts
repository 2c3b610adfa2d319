/**
 * Host-level checks for the fast datapath that need no privileges. Those that need the
 * kernel's answer (VXLAN, ESP) are probes in kernel-datapath.ts and xfrm-ops.ts.
 */

/** Weave's floor for encrypted fastdp (the iptables-mark workaround, spec 5.4). */
export const MIN_KERNEL: readonly [number, number] = [4, 2];

/** Why this kernel release is too old for fastdp, or undefined. */
export function kernelVersionProblem(release: string): string | undefined {
  const match = /^(\d+)\.(\d+)/.exec(release);
  if (match === null) return `cannot read the kernel version from ${JSON.stringify(release)}`;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  const [needMajor, needMinor] = MIN_KERNEL;
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return undefined;
  return `kernel ${major}.${minor} is older than ${needMajor}.${needMinor}`;
}

/** VXLAN's cost over the underlay IP MTU: outer IP 20, UDP 8, VXLAN 8, inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;
/**
 * ESP transport mode around it: SPI 4, sequence 4, IV 8, pad length 1, next header 1, ICV 16,
 * plus 0-3 bytes of padding to 4-byte alignment, which an MTU divisible by 4 never needs.
 */
export const ESP_OVERHEAD = 34;

/** The largest datapath MTU an underlay of `underlayMtu` carries unfragmented (spec 5.6). */
export function fastdpMaxMtu(underlayMtu: number, encrypted: boolean): number {
  if (!encrypted) return underlayMtu - VXLAN_OVERHEAD;
  return Math.floor((underlayMtu - VXLAN_OVERHEAD - ESP_OVERHEAD) / 4) * 4;
}

/** Why a datapath MTU does not fit the underlay towards a peer, or undefined. */
export function fastdpMtuProblem(
  mtu: number,
  underlayMtu: number,
  encrypted: boolean,
): string | undefined {
  const max = fastdpMaxMtu(underlayMtu, encrypted);
  if (mtu <= max && (!encrypted || mtu % 4 === 0)) return undefined;
  if (mtu > max) {
    return `the underlay MTU ${underlayMtu} carries at most MTU ${max} over VXLAN${encrypted ? " and ESP" : ""}, --mtu is ${mtu}`;
  }
  return `with ESP the MTU must be divisible by 4, --mtu is ${mtu}`;
}
