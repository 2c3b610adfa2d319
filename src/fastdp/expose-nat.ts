/**
 * The NAT rules of `weft expose` (Weave's `weave expose`, spec 8.7.6: the exposed address goes
 * on the bridge "with NAT rules"). The spec names no rules, so these are Weave's layout: table
 * nat, chain WEAVE jumped to from POSTROUTING, and for each exposed subnet CIDR, in this order:
 *
 *   nat POSTROUTING  -j WEAVE
 *   nat WEAVE  -s CIDR -d 224.0.0.0/4 -j RETURN     multicast from the subnet is left alone
 *   nat WEAVE  ! -s CIDR -d CIDR -j MASQUERADE      traffic entering the subnet from elsewhere
 *   nat WEAVE  -s CIDR ! -d CIDR -j MASQUERADE      traffic leaving the subnet
 *
 * so that the subnet's endpoints reach the outside world through the host, and the host and the
 * outside reach them, without anyone routing the subnet back to this host.
 *
 * Why `-C` before each `-A` rather than iptables-restore (as ipsec-guard does for its own
 * chains): the WEAVE chain is shared, by every exposed subnet and by Weave's own rules on a
 * node migrated from Weave, and restore --noflush can only declare a chain by flushing it, nor
 * can it say "append unless present". Two weft commands running at once may interleave a check
 * and an add and leave a duplicate; hiding removes every copy, so that is harmless.
 */
import { formatCidr, networkAddress, parseCidrAddress } from "../ipam/address.js";
import { type CommandResult, type CommandRunner, spawnRunner } from "./ipsec-guard.js";

export const NAT_TABLE = "nat";
export const NAT_CHAIN = "WEAVE";
const HOOK_CHAIN = "POSTROUTING";
const MULTICAST = "224.0.0.0/4";

/** One rule: its chain and the arguments after the chain name. */
export interface NatRule {
  readonly chain: string;
  readonly args: readonly string[];
}

/** POSTROUTING's jump into WEAVE. */
export const HOOK_RULE: NatRule = { chain: HOOK_CHAIN, args: ["-j", NAT_CHAIN] };

/** The subnet an exposed address lies in: "198.19.13.5/24" → "198.19.13.0/24". */
export function subnetOf(address: string): string {
  const cidr = parseCidrAddress(address, "exposed address");
  return formatCidr({ address: networkAddress(cidr), prefixLength: cidr.prefixLength });
}

/**
 * The three rules of an exposed subnet, in order. `cidr` must have its host bits clear: iptables
 * stores the network, and `iptables -S` should show exactly what was asked for.
 */
export function natRules(cidr: string): NatRule[] {
  if (subnetOf(cidr) !== cidr) {
    throw new Error(`expose NAT: ${JSON.stringify(cidr)} is not a subnet (host bits are set)`);
  }
  return [
    { chain: NAT_CHAIN, args: ["-s", cidr, "-d", MULTICAST, "-j", "RETURN"] },
    { chain: NAT_CHAIN, args: ["!", "-s", cidr, "-d", cidr, "-j", "MASQUERADE"] },
    { chain: NAT_CHAIN, args: ["-s", cidr, "!", "-d", cidr, "-j", "MASQUERADE"] },
  ];
}

/** A rule as `iptables -t nat -S` prints it: "-A WEAVE -s … -j RETURN". */
export function ruleText(rule: NatRule): string {
  return ["-A", rule.chain, ...rule.args].join(" ");
}

export interface ExposeNatOptions {
  /** How commands are run. Default: spawn them here. */
  runner?: CommandRunner;
  /** Binary name. Default "iptables". */
  iptables?: string;
}

/** Safety net for the loop removing every copy of a rule. */
const MAX_COPIES = 64;

/** iptables on the nat table, with errors that name the command and quote its stderr. */
class NatTable {
  private readonly run: CommandRunner;
  private readonly iptables: string;

  constructor(opts: ExposeNatOptions) {
    this.run = opts.runner ?? spawnRunner();
    this.iptables = opts.iptables ?? "iptables";
  }

  private argv(args: readonly string[]): string[] {
    return ["-w", "-t", NAT_TABLE, ...args];
  }

  private exec(args: readonly string[]): Promise<CommandResult> {
    return this.run(this.iptables, this.argv(args));
  }

  private error(what: string, args: readonly string[], r: CommandResult): Error {
    const command = [this.iptables, ...this.argv(args)].join(" ");
    const status = r.code === null ? "did not run" : `exited ${r.code}`;
    return new Error(
      `expose NAT: cannot ${what}: \`${command}\` ${status}: ${r.stderr.trim() || "(no error output)"}`,
    );
  }

  private async must(args: readonly string[], what: string): Promise<void> {
    const r = await this.exec(args);
    if (r.code !== 0) throw this.error(what, args, r);
  }

  /** Exit 0 → true, 1 → false (no such chain, or no such rule), anything else → error. */
  private async test(args: readonly string[], what: string): Promise<boolean> {
    const r = await this.exec(args);
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    throw this.error(what, args, r);
  }

  chainExists(): Promise<boolean> {
    return this.test(["-S", NAT_CHAIN], `list chain ${NAT_TABLE} ${NAT_CHAIN}`);
  }

  async ensureChain(): Promise<void> {
    if (await this.chainExists()) return;
    const args = ["-N", NAT_CHAIN];
    const r = await this.exec(args);
    // Another weft command (or Weave) may have made it in between.
    if (r.code !== 0 && !(await this.chainExists())) {
      throw this.error(`create chain ${NAT_TABLE} ${NAT_CHAIN}`, args, r);
    }
  }

  has(rule: NatRule): Promise<boolean> {
    return this.test(["-C", rule.chain, ...rule.args], `check rule "${ruleText(rule)}"`);
  }

  append(rule: NatRule): Promise<void> {
    return this.must(["-A", rule.chain, ...rule.args], `add rule "${ruleText(rule)}"`);
  }

  async removeAll(rule: NatRule): Promise<void> {
    for (let n = 0; await this.has(rule); n++) {
      if (n === MAX_COPIES) {
        throw new Error(
          `expose NAT: rule "${ruleText(rule)}" is still there after ${MAX_COPIES} deletions`,
        );
      }
      await this.must(["-D", rule.chain, ...rule.args], `delete rule "${ruleText(rule)}"`);
    }
  }
}

/**
 * Makes the WEAVE chain and POSTROUTING's jump to it if missing, then the subnet's rules.
 * Idempotent. Throws on an invalid CIDR or when iptables fails.
 */
export async function exposeNat(cidr: string, opts: ExposeNatOptions = {}): Promise<void> {
  const rules = natRules(cidr);
  const nat = new NatTable(opts);
  await nat.ensureChain();
  if (!(await nat.has(HOOK_RULE))) await nat.append(HOOK_RULE);
  const present: boolean[] = [];
  for (const rule of rules) present.push(await nat.has(rule));
  if (present.every(Boolean)) return;
  // A partial set (an interrupted run, a hand edit) is replaced whole, so that the RETURN for
  // multicast stays ahead of the MASQUERADE that would otherwise catch it.
  for (const [i, rule] of rules.entries()) if (present[i]) await nat.removeAll(rule);
  for (const rule of rules) await nat.append(rule);
}

/**
 * Removes every copy of the subnet's rules; rules or chain already gone are fine. The chain and
 * POSTROUTING's jump stay: other subnets (or Weave) may use them, and empty they cost nothing.
 */
export async function hideNat(cidr: string, opts: ExposeNatOptions = {}): Promise<void> {
  const rules = natRules(cidr);
  const nat = new NatTable(opts);
  if (!(await nat.chainExists())) return;
  for (const rule of rules) await nat.removeAll(rule);
}
