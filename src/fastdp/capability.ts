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
