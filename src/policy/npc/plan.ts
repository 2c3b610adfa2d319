/**
 * The kernel-path enforcement of NetworkPolicy, planned: which ipsets and which iptables rules
 * (filter table) enforce a set of policies, with Weave-NPC's chain names, set names, hooks and
 * rule comments (spec 7), so that an operator who knows Weave's ruleset reads weft's. Pure: no
 * I/O; `apply.ts` puts a plan into the kernel.
 *
 * Semantics are the matcher's (`../matcher.ts`) as far as iptables can express them, with
 * Weave's static chains around them: established/related flows are always accepted, only NEW
 * flows are evaluated, drops are logged to NFLOG group 86. Where weft goes beyond Weave:
 * - named ports are resolved against the destination endpoint's declared ports, through a
 *   `hash:ip,port` set per (protocol, name) holding `ip,proto:port` of every endpoint that
 *   declares it, matched `dst,dst` (so each destination resolves the name to its own number);
 * - `endPort` ranges become `--dport lo:hi`.
 *
 * Where the kernel path follows Weave rather than the matcher (the spec's static chains): once
 * any policy has Egress, NEW traffic from the bridge whose source is not a known endpoint is
 * dropped, and traffic to the host's own addresses skips egress filtering.
 *
 * Rules are written in iptables-save's canonical form (address matches, then `-p`, then the
 * matches in order), so what `iptables-save` prints back compares equal token by token.
 */

import { createHash } from "node:crypto";
import {
  type Endpoint,
  type Namespace,
  type NetworkPolicy,
  type PolicyPeer,
  type PolicyPort,
  type Protocol,
  PROTOCOLS,
  namespaceLabels,
  parseCidr,
  parseIPv4,
  policyKey,
} from "../model.js";
import {
  EVERYTHING,
  type LabelSelector,
  type Labels,
  compileSelector,
  selectorToString,
} from "../selector.js";

// ---------------------------------------------------------------------------------------------
// Names and values, as Weave has them

export const NPC_CHAIN = "WEAVE-NPC";
export const INGRESS_CHAIN = "WEAVE-NPC-INGRESS";
export const DEFAULT_CHAIN = "WEAVE-NPC-DEFAULT";
export const EGRESS_CHAIN = "WEAVE-NPC-EGRESS";
export const EGRESS_DEFAULT_CHAIN = "WEAVE-NPC-EGRESS-DEFAULT";
export const EGRESS_CUSTOM_CHAIN = "WEAVE-NPC-EGRESS-CUSTOM";
export const EGRESS_ACCEPT_CHAIN = "WEAVE-NPC-EGRESS-ACCEPT";

/** Every chain of ours, in the order they are declared. */
export const NPC_CHAINS: readonly string[] = [
  NPC_CHAIN,
  INGRESS_CHAIN,
  DEFAULT_CHAIN,
  EGRESS_CHAIN,
  EGRESS_DEFAULT_CHAIN,
  EGRESS_CUSTOM_CHAIN,
  EGRESS_ACCEPT_CHAIN,
];

/** Set by WEAVE-NPC-EGRESS-ACCEPT on flows egress allows. */
export const EGRESS_MARK = "0x40000/0x40000";
export const NFLOG_GROUP = "86";
export const SET_PREFIX = "weave-";
/** Weave's bound on the members of a namespace-selector `list:set`. */
export const LIST_SET_SIZE = 1024;

const MULTICAST = "224.0.0.0/4";
const HOOK_COMMENT = "NOTE: this must go before '-j KUBE-FORWARD'";
/** xt_comment keeps 255 characters; ipset's comment extension the same. */
const MAX_COMMENT = 255;

const BASE85 =
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789(){}[]+=_$%^!*|/?.;:@#~";

/**
 * Weave's ipset name for a descriptive string: `weave-` + the SHA-1 of `input` read as a
 * big-endian integer, in base 85, least-significant digit first (at most 25 digits, so the name
 * fits ipset's 31 characters).
 */
export function ipsetName(input: string): string {
  let n = BigInt(`0x${createHash("sha1").update(input, "utf8").digest("hex")}`);
  let out = "";
  while (n > 0n) {
    out += BASE85[Number(n % 85n)];
    n /= 85n;
  }
  return SET_PREFIX + out;
}

// ---------------------------------------------------------------------------------------------
// Plan types

export type IpsetType = "hash:ip" | "hash:net" | "hash:ip,port" | "list:set";

export interface IpsetEntry {
  /** An IP, a CIDR (`/32` written as a plain IP, as ipset prints it), `ip,proto:port`, or a set name. */
  readonly value: string;
  readonly comment?: string;
}

export interface Ipset {
  readonly name: string;
  readonly type: IpsetType;
  /** The string the name is derived from (for logs; the kernel does not keep it). */
  readonly description: string;
  /** Sorted by value, no duplicates. */
  readonly entries: readonly IpsetEntry[];
}

/** One iptables rule of the filter table: `-A chain ...args`. */
export interface NpcRule {
  readonly chain: string;
  readonly args: readonly string[];
}

export interface NpcPlan {
  /** Sorted by name. */
  readonly sets: readonly Ipset[];
  /** The rules of our chains, in order. */
  readonly rules: readonly NpcRule[];
  /** The rules in INPUT and FORWARD that lead to our chains, in order (each chain's first). */
  readonly hooks: readonly NpcRule[];
  /** iptables-restore input (for `--noflush`) that creates or flushes our chains and fills them. */
  readonly iptablesRestore: string;
  /**
   * The rules that admit a new flow for a policy (ingress ACCEPT, egress mark), each with the
   * policies (`namespace/name`) it came from: a rule several policies share is theirs alike.
   * Their packet counters are the kernel path's "allowed" counts (they sit behind `state NEW`).
   */
  readonly allowRules: readonly { readonly rule: NpcRule; readonly policies: readonly string[] }[];
}

export interface NpcOptions {
  /**
   * The bridge the endpoints are on (default "weave"), or several: weft has one per network in
   * bridge mode.
   */
  readonly bridge?: string | readonly string[];
  /**
   * The bridge port towards other nodes: traffic out of it is not ingress-checked here, traffic
   * in from it not egress-checked (each node checks its own end). A trailing `+` is an
   * interface wildcard. Default "vethwe-bridge".
   */
  readonly routerPort?: string | readonly string[];
  /** Accept multicast (224.0.0.0/4) both ways, as Weave's `--allow-mcast`. Default true. */
  readonly allowMulticast?: boolean;
}

export interface NpcInput {
  readonly policies: readonly NetworkPolicy[];
  /** Namespace labels; a namespace not listed has only `kubernetes.io/metadata.name`. */
  readonly namespaces?: readonly Namespace[];
  /**
   * Every endpoint known (local and remote, so that peer selectors find remote ones too). An IP
   * claimed by several endpoints belongs to the first in (namespace, name) order, as in the
   * matcher.
   */
  readonly endpoints?: readonly Endpoint[];
}

/** The input cannot be planned; `issues` lists every problem, one per line of the message. */
export class NpcPlanError extends Error {
  constructor(readonly issues: readonly string[]) {
    super(`npc: cannot plan network policy:\n${issues.join("\n")}`);
    this.name = "NpcPlanError";
  }
}

// ---------------------------------------------------------------------------------------------
// Hooks

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

function checkIfName(what: string, name: string, wildcard: boolean): string | undefined {
  const base = wildcard && name.endsWith("+") ? name.slice(0, -1) : name;
  if (IFNAME.test(base)) return undefined;
  return `${what} ${JSON.stringify(name)} is not an interface name`;
}

interface ResolvedOptions {
  readonly bridges: readonly string[];
  /** weft has two kinds of port towards other nodes: Node's TAP and the VXLAN tunnels. */
  readonly routerPorts: readonly string[];
  readonly allowMulticast: boolean;
}

function resolvedOptions(opts: NpcOptions): ResolvedOptions {
  const givenBridge = opts.bridge ?? "weave";
  const bridges = typeof givenBridge === "string" ? [givenBridge] : [...givenBridge];
  const given = opts.routerPort ?? "vethwe-bridge";
  const routerPorts = typeof given === "string" ? [given] : [...given];
  const issues = [
    ...bridges.map((bridge) => checkIfName("bridge", bridge, false)),
    bridges.length === 0 ? "no bridge" : undefined,
    ...routerPorts.map((port) => checkIfName("router port", port, true)),
    routerPorts.length === 0 ? "no router port" : undefined,
  ].filter((i): i is string => i !== undefined);
  if (issues.length > 0) throw new NpcPlanError(issues);
  return { bridges, routerPorts, allowMulticast: opts.allowMulticast ?? true };
}

/**
 * The hook rules of spec 7, in order: INPUT's, then FORWARD's. With several bridges each step
 * is taken for all of them before the next, so that traffic routed from one bridge to another
 * meets the egress check of the first and the ingress check of the second before any bridge's
 * "leaving the bridge: accept" rule; with one bridge this is exactly Weave's list.
 */
export function hookRules(opts: NpcOptions = {}): NpcRule[] {
  const { bridges } = resolvedOptions(opts);
  const comment = ["-m", "comment", "--comment", HOOK_COMMENT];
  const each = (rule: (b: string) => NpcRule[]): NpcRule[] => bridges.flatMap(rule);
  return [
    ...each((b) => [{ chain: "INPUT", args: ["-i", b, "-j", EGRESS_CHAIN] }]),
    ...each((b) => [{ chain: "FORWARD", args: ["-i", b, ...comment, "-j", EGRESS_CHAIN] }]),
    ...each((b) => [
      { chain: "FORWARD", args: ["-o", b, ...comment, "-j", NPC_CHAIN] },
      {
        chain: "FORWARD",
        args: [
          "-o",
          b,
          "-m",
          "state",
          "--state",
          "NEW",
          "-j",
          "NFLOG",
          "--nflog-group",
          NFLOG_GROUP,
        ],
      },
      { chain: "FORWARD", args: ["-o", b, "-j", "DROP"] },
    ]),
    ...each((b) => [{ chain: "FORWARD", args: ["-i", b, "!", "-o", b, "-j", "ACCEPT"] }]),
    ...each((b) => [
      {
        chain: "FORWARD",
        args: ["-o", b, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
      },
    ]),
  ];
}

// ---------------------------------------------------------------------------------------------
// iptables-restore text

/** One argument as iptables-restore reads it: double-quoted when it has spaces or quotes. */
function quoteArg(arg: string): string {
  return /^[^\s"'\\]+$/.test(arg) ? arg : `"${arg}"`;
}

/** `-A chain args` (or another op) as an iptables-restore line. */
export function ruleLine(op: string, rule: NpcRule): string {
  return [op, rule.chain, ...rule.args.map(quoteArg)].join(" ");
}

/**
 * Splits an iptables-save / `iptables -S` line into arguments (double quotes group, a backslash
 * escapes the next character), so rules can be compared however they were quoted.
 */
export function splitRuleLine(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (c === '"') {
      quoted = !quoted;
      inWord = true;
    } else if (!quoted && /\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

function restoreText(rules: readonly NpcRule[]): string {
  return [
    "*filter",
    ...NPC_CHAINS.map((c) => `:${c} - [0:0]`),
    ...rules.map((r) => ruleLine("-A", r)),
    "COMMIT",
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// ipset operations

export type IpsetOp =
  | { readonly op: "create"; readonly set: string; readonly type: IpsetType }
  | { readonly op: "add"; readonly set: string; readonly entry: IpsetEntry }
  | { readonly op: "del"; readonly set: string; readonly value: string }
  | { readonly op: "destroy"; readonly set: string };

function createOptions(type: IpsetType): string {
  return type === "list:set" ? `size ${LIST_SET_SIZE} comment` : "family inet comment";
}

/** One op as an `ipset restore` line (run with `-exist`, so re-adding updates the comment). */
export function ipsetOpLine(op: IpsetOp): string {
  switch (op.op) {
    case "create":
      return `create ${op.set} ${op.type} ${createOptions(op.type)}`;
    case "add":
      return (
        `add ${op.set} ${op.entry.value}` +
        (op.entry.comment === undefined ? "" : ` comment "${op.entry.comment}"`)
      );
    case "del":
      return `del ${op.set} ${op.value}`;
    case "destroy":
      return `destroy ${op.set}`;
  }
}

/** `ipset restore` input for `ops`. */
export function ipsetRestoreText(ops: readonly IpsetOp[]): string {
  return ops.map((op) => ipsetOpLine(op) + "\n").join("");
}

const listFirst = (a: Ipset, b: Ipset): number =>
  Number(b.type === "list:set") - Number(a.type === "list:set");

/**
 * The ipset operations that turn `old` into `next`, in an order the kernel accepts: creates,
 * then per set deletions and additions (an entry whose comment changed is added again; lists'
 * additions last, as they name sets created here), then destroys (lists before the sets they
 * may name). Sets
 * that `next` no longer has are destroyed whole. The destroys are last so that an applier can
 * run them after the iptables rules stop naming those sets.
 */
export function diffSets(old: readonly Ipset[], next: readonly Ipset[]): IpsetOp[] {
  const oldByName = new Map(old.map((s) => [s.name, s]));
  const nextByName = new Map(next.map((s) => [s.name, s]));
  const creates: IpsetOp[] = [];
  const changes: IpsetOp[] = [];
  const destroys: IpsetOp[] = [];
  const listAdds: IpsetOp[] = [];
  for (const set of next) {
    const before = oldByName.get(set.name);
    if (before !== undefined && before.type !== set.type) {
      throw new Error(
        `npc: ipset ${set.name} (${set.description}) would change type from ${before.type} to ${set.type}`,
      );
    }
    if (before === undefined) creates.push({ op: "create", set: set.name, type: set.type });
    const had = new Map((before?.entries ?? []).map((e) => [e.value, e.comment]));
    const has = new Set(set.entries.map((e) => e.value));
    for (const value of had.keys()) {
      if (!has.has(value)) changes.push({ op: "del", set: set.name, value });
    }
    for (const entry of set.entries) {
      if (!had.has(entry.value) || had.get(entry.value) !== entry.comment) {
        // A list's members may be sets created above: add to lists last.
        (set.type === "list:set" ? listAdds : changes).push({ op: "add", set: set.name, entry });
      }
    }
  }
  for (const set of [...old].sort(listFirst)) {
    if (!nextByName.has(set.name)) destroys.push({ op: "destroy", set: set.name });
  }
  return [...creates, ...changes, ...listAdds, ...destroys];
}

// ---------------------------------------------------------------------------------------------
// Planning

/** A `from`/`to` entry turned into iptables matches for one side of a flow. */
interface PeerSpec {
  /** `-s` / `-d` with a CIDR, for an ipBlock. */
  readonly cidr?: string;
  /** The set to match and whether it is negated (ipBlock except). */
  readonly set?: { readonly name: string; readonly negate: boolean };
  readonly description: string;
}

interface PortSpec {
  readonly protocol?: string;
  readonly matches: readonly string[];
}

const ANYWHERE: PeerSpec = { description: "anywhere" };
const ANY_PORT: PortSpec = { matches: [] };

interface SetBuilder {
  readonly type: IpsetType;
  readonly description: string;
  readonly entries: Map<string, string | undefined>;
}

/** Comment text, shortened to what the kernel keeps. */
function clip(text: string): string {
  return text.length <= MAX_COMMENT ? text : `${text.slice(0, MAX_COMMENT - 3)}...`;
}

/** A CIDR with host bits cleared (as iptables and ipset print it), or undefined for IPv6. */
function normaliseCidr(parsed: { family: 4 | 6; network: bigint; prefix: number }): string {
  const n = Number(parsed.network);
  const ip = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
  return `${ip}/${parsed.prefix}`;
}

class Planner {
  readonly issues: string[] = [];
  private readonly sets = new Map<string, SetBuilder>();
  private readonly rules: NpcRule[] = [];
  private readonly seen = new Set<string>();
  /** Allow rule key → the rule and the policies it came from. */
  private readonly allowOwners = new Map<string, { rule: NpcRule; policies: string[] }>();
  /** Endpoint key → the IPv4 addresses it owns. */
  private readonly owned = new Map<string, string[]>();
  private readonly endpoints: Endpoint[];
  private readonly nsLabels = new Map<string, Labels>();

  constructor(input: NpcInput) {
    const byKey = new Map<string, Endpoint>();
    for (const ep of input.endpoints ?? []) byKey.set(`${ep.namespace}/${ep.name}`, ep);
    this.endpoints = [...byKey.keys()].sort().map((k) => byKey.get(k) as Endpoint);
    const claimed = new Set<number>();
    for (const ep of this.endpoints) {
      const mine: string[] = [];
      for (const ip of ep.ips) {
        const n = parseIPv4(ip);
        if (n === undefined) {
          this.issues.push(
            `endpoint ${ep.namespace}/${ep.name}: ${JSON.stringify(ip)} is not an IPv4 address`,
          );
        } else if (!claimed.has(n)) {
          claimed.add(n);
          mine.push(ip);
        }
      }
      this.owned.set(`${ep.namespace}/${ep.name}`, mine);
      this.safe(`endpoint ${JSON.stringify(ep.name)}`, this.podComment(ep));
      for (const p of ep.ports) this.checkDeclaredPort(ep, p.name, p.port, p.protocol);
    }
    for (const ns of input.namespaces ?? []) {
      this.nsLabels.set(ns.name, namespaceLabels(ns.name, ns.labels));
    }
    for (const name of [
      ...this.nsLabels.keys(),
      ...this.endpoints.map((e) => e.namespace),
      ...input.policies.map((p) => p.namespace),
    ]) {
      if (!this.nsLabels.has(name)) this.nsLabels.set(name, namespaceLabels(name));
    }
    for (const name of this.nsLabels.keys()) this.safe("namespace", name);
  }

  private checkDeclaredPort(ep: Endpoint, name: string, port: number, protocol: Protocol): void {
    const where = `endpoint ${ep.namespace}/${ep.name}: port ${JSON.stringify(name)}`;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      this.issues.push(`${where}: number ${String(port)} is not in 1..65535`);
    }
    if (!PROTOCOLS.includes(protocol)) {
      this.issues.push(`${where}: protocol ${JSON.stringify(protocol)} is not TCP, UDP or SCTP`);
    }
    this.safe(where, name);
  }

  /**
   * Records an issue when `text` (which goes into a comment or a set entry) has characters
   * iptables-restore or ipset restore would not read back as written. Returns `text`.
   */
  safe(what: string, text: string): string {
    if (!/^[\x20-\x7e]*$/.test(text) || /["\\]/.test(text)) {
      this.issues.push(
        `${what} ${JSON.stringify(text)}: only printable ASCII without quotes or backslashes can go into a rule comment`,
      );
    }
    return text;
  }

  private podComment(ep: Endpoint): string {
    return `namespace: ${ep.namespace}, pod: ${ep.name}`;
  }

  private ips(ep: Endpoint): readonly string[] {
    return this.owned.get(`${ep.namespace}/${ep.name}`) ?? [];
  }

  private labelsOf(namespace: string): Labels {
    return this.nsLabels.get(namespace) ?? namespaceLabels(namespace);
  }

  private set(description: string, type: IpsetType): SetBuilder {
    const name = ipsetName(description);
    let set = this.sets.get(name);
    if (set === undefined) {
      set = { type, description, entries: new Map() };
      this.sets.set(name, set);
    } else if (set.type !== type || set.description !== description) {
      // Only a SHA-1 collision gets here.
      this.issues.push(
        `ipset name ${name} is derived from both ${set.description} and ${description}`,
      );
    }
    return set;
  }

  private fillPods(set: SetBuilder, match: (ep: Endpoint) => boolean): void {
    for (const ep of this.endpoints) {
      if (!match(ep)) continue;
      for (const ip of this.ips(ep)) set.entries.set(ip, clip(this.podComment(ep)));
    }
  }

  /** `<ns>:<selector>`: pods of `namespace` that `selector` selects. */
  podSet(namespace: string, selector: LabelSelector): string {
    const description = `${namespace}:${selectorToString(selector)}`;
    const set = this.set(description, "hash:ip");
    const match = compileSelector(selector);
    this.fillPods(set, (ep) => ep.namespace === namespace && match(ep.labels));
    return ipsetName(description);
  }

  /** `:<ns selector>`: the all-pods sets of the matching namespaces. */
  private namespaceSet(selector: LabelSelector): string {
    const description = `:${selectorToString(selector)}`;
    const set = this.set(description, "list:set");
    const match = compileSelector(selector);
    for (const ns of [...this.nsLabels.keys()].sort()) {
      if (match(this.labelsOf(ns)))
        set.entries.set(this.podSet(ns, EVERYTHING), `namespace: ${ns}`);
    }
    if (set.entries.size > LIST_SET_SIZE) {
      this.issues.push(
        `namespace selector ${JSON.stringify(selectorToString(selector))} matches ${set.entries.size} namespaces; a list:set holds at most ${LIST_SET_SIZE}`,
      );
    }
    return ipsetName(description);
  }

  /** `:<ns selector><pod selector>`: matching pods of matching namespaces. */
  private namespacePodSet(nsSelector: LabelSelector, podSelector: LabelSelector): string {
    const description = `:${selectorToString(nsSelector)}${selectorToString(podSelector)}`;
    const set = this.set(description, "hash:ip");
    const nsMatch = compileSelector(nsSelector);
    const podMatch = compileSelector(podSelector);
    this.fillPods(set, (ep) => nsMatch(this.labelsOf(ep.namespace)) && podMatch(ep.labels));
    return ipsetName(description);
  }

  /** `<ns>:ipblock-except:<sorted cidrs>`: the except CIDRs of an ipBlock. */
  private exceptSet(namespace: string, except: readonly string[]): string {
    const description = `${namespace}:ipblock-except:${[...except].sort().join(",")}`;
    const set = this.set(description, "hash:net");
    for (const text of except) {
      const parsed = parseCidr(text);
      if (typeof parsed === "string") {
        this.issues.push(`ipBlock except: ${parsed}`);
        continue;
      }
      if (parsed.family !== 4) continue;
      const cidr = normaliseCidr(parsed);
      set.entries.set(parsed.prefix === 32 ? (cidr.split("/")[0] as string) : cidr, undefined);
    }
    return ipsetName(description);
  }

  /** `named-port:<PROTO>/<name>` (weft's): `ip,proto:port` of endpoints declaring the name. */
  private namedPortSet(protocol: Protocol, name: string): string {
    const description = `named-port:${protocol}/${name}`;
    const set = this.set(description, "hash:ip,port");
    for (const ep of this.endpoints) {
      for (const p of ep.ports) {
        if (p.name !== name || p.protocol !== protocol) continue;
        for (const ip of this.ips(ep)) {
          set.entries.set(`${ip},${protocol.toLowerCase()}:${p.port}`, clip(this.podComment(ep)));
        }
      }
    }
    return ipsetName(description);
  }

  /** undefined: the peer matches no IPv4 address (an IPv6 ipBlock). */
  peer(peer: PolicyPeer, policyNamespace: string): PeerSpec | undefined {
    if (peer.kind === "ipBlock") {
      const parsed = parseCidr(peer.ipBlock.cidr);
      if (typeof parsed === "string") {
        this.issues.push(`ipBlock cidr: ${parsed}`);
        return undefined;
      }
      if (parsed.family !== 4) return undefined;
      const cidr = normaliseCidr(parsed);
      const except = peer.ipBlock.except;
      const description =
        except.length === 0 ? `cidr: ${cidr}` : `cidr: ${cidr}, except: ${except.join(",")}`;
      if (except.length === 0) return { cidr, description };
      const name = this.exceptSet(policyNamespace, except);
      return { cidr, set: { name, negate: true }, description };
    }
    const pod = peer.podSelector;
    const ns = peer.namespaceSelector;
    if (ns === undefined) {
      const sel = pod ?? EVERYTHING;
      return {
        set: { name: this.podSet(policyNamespace, sel), negate: false },
        description: `pods: namespace: ${policyNamespace}, selector: ${selectorToString(sel)}`,
      };
    }
    if (pod === undefined) {
      return {
        set: { name: this.namespaceSet(ns), negate: false },
        description: `namespaces: selector: ${selectorToString(ns)}`,
      };
    }
    return {
      set: { name: this.namespacePodSet(ns, pod), negate: false },
      description: `namespaces: selector: ${selectorToString(ns)}, pods: selector: ${selectorToString(pod)}`,
    };
  }

  port(port: PolicyPort, where: string): PortSpec | undefined {
    if (!PROTOCOLS.includes(port.protocol)) {
      this.issues.push(
        `${where}: protocol ${JSON.stringify(port.protocol)} is not TCP, UDP or SCTP`,
      );
      return undefined;
    }
    const p = port.protocol.toLowerCase();
    if (port.port === undefined) return { protocol: p, matches: [] };
    if (typeof port.port === "string") {
      this.safe(`${where}: port name`, port.port);
      const set = this.namedPortSet(port.protocol, port.port);
      return { protocol: p, matches: ["-m", "set", "--match-set", set, "dst,dst"] };
    }
    const lo = port.port;
    const hi = port.endPort ?? lo;
    if (!Number.isInteger(lo) || lo < 1 || lo > 65535) {
      this.issues.push(`${where}: port ${String(lo)} is not in 1..65535`);
      return undefined;
    }
    if (!Number.isInteger(hi) || hi < lo || hi > 65535) {
      this.issues.push(`${where}: endPort ${String(hi)} is not in ${lo}..65535`);
      return undefined;
    }
    return { protocol: p, matches: ["-m", p, "--dport", hi === lo ? `${lo}` : `${lo}:${hi}`] };
  }

  add(chain: string, args: readonly string[], allowsFor?: string): void {
    const key = `${chain}\0${args.join("\0")}`;
    if (allowsFor !== undefined) {
      const owners = this.allowOwners.get(key);
      if (owners === undefined)
        this.allowOwners.set(key, { rule: { chain, args }, policies: [allowsFor] });
      else if (!owners.policies.includes(allowsFor)) owners.policies.push(allowsFor);
    }
    if (this.seen.has(key)) return; // identical rule specs are shared across policies
    this.seen.add(key);
    this.rules.push({ chain, args });
  }

  /** One (peer, port) of a rule: the iptables rule(s), in canonical argument order. */
  policyRule(
    policy: string,
    direction: "ingress" | "egress",
    target: { readonly set: string; readonly description: string },
    peer: PeerSpec,
    port: PortSpec,
  ): void {
    const peerSide = direction === "ingress" ? "src" : "dst";
    const targetMatch = [
      "-m",
      "set",
      "--match-set",
      target.set,
      peerSide === "src" ? "dst" : "src",
    ];
    const peerMatch =
      peer.set === undefined
        ? []
        : ["-m", "set", ...(peer.set.negate ? ["!"] : []), "--match-set", peer.set.name, peerSide];
    const [srcDesc, dstDesc] =
      direction === "ingress"
        ? [peer.description, target.description]
        : [target.description, peer.description];
    const args = [
      ...(peer.cidr === undefined ? [] : [peerSide === "src" ? "-s" : "-d", peer.cidr]),
      ...(port.protocol === undefined ? [] : ["-p", port.protocol]),
      ...(peerSide === "src" ? [...peerMatch, ...targetMatch] : [...targetMatch, ...peerMatch]),
      ...port.matches,
      "-m",
      "comment",
      "--comment",
      clip(`${srcDesc} -> ${dstDesc} (${direction})`),
    ];
    if (direction === "ingress") {
      this.add(INGRESS_CHAIN, [...args, "-j", "ACCEPT"], policy);
    } else {
      this.add(EGRESS_CUSTOM_CHAIN, [...args, "-j", EGRESS_ACCEPT_CHAIN], policy);
      this.add(EGRESS_CUSTOM_CHAIN, [...args, "-j", "RETURN"]);
    }
  }

  /** Adds the rules of `policy`; returns its directions and the keys of the endpoints it selects. */
  policy(policy: NetworkPolicy): { ingress: boolean; egress: boolean; selected: Set<string> } {
    const key = policyKey(policy);
    const selector = selectorToString(policy.podSelector);
    this.safe(`policy ${key}: pod selector`, selector);
    const target = {
      set: this.podSet(policy.namespace, policy.podSelector),
      description: `pods: namespace: ${policy.namespace}, selector: ${selector}`,
    };
    const match = compileSelector(policy.podSelector);
    const selected = new Set(
      this.endpoints
        .filter((ep) => ep.namespace === policy.namespace && match(ep.labels))
        .map((ep) => `${ep.namespace}/${ep.name}`),
    );
    const ingress = policy.policyTypes.includes("Ingress");
    const egress = policy.policyTypes.includes("Egress");
    for (const direction of ["ingress", "egress"] as const) {
      if (!(direction === "ingress" ? ingress : egress)) continue;
      policy[direction].forEach((rule, i) => {
        const where = `policy ${key}: spec.${direction}[${i}]`;
        const ports: PortSpec[] = [];
        rule.ports.forEach((port, j) => {
          const spec = this.port(port, `${where}.ports[${j}]`);
          if (spec !== undefined) ports.push(spec);
        });
        const peers: PeerSpec[] = [];
        for (const peer of rule.peers) {
          const spec = this.peer(peer, policy.namespace);
          if (spec !== undefined) peers.push(this.checked(where, spec));
        }
        // Peers listed, none of them IPv4: the rule allows nothing here.
        if (rule.peers.length > 0 && peers.length === 0) return;
        for (const peer of peers.length > 0 ? peers : [ANYWHERE]) {
          for (const port of rule.ports.length > 0 ? ports : [ANY_PORT]) {
            this.policyRule(key, direction, target, peer, port);
          }
        }
      });
    }
    return { ingress, egress, selected };
  }

  private checked(where: string, spec: PeerSpec): PeerSpec {
    this.safe(`${where}: peer`, spec.description);
    return spec;
  }

  /** The default-allow sets and rules of every namespace. */
  defaults(selected: { ingress: Set<string>; egress: Set<string> }): void {
    for (const ns of [...this.nsLabels.keys()].sort()) {
      for (const direction of ["ingress", "egress"] as const) {
        const set = this.set(`${direction}-default-allow:${ns}`, "hash:ip");
        this.fillPods(
          set,
          (ep) => ep.namespace === ns && !selected[direction].has(`${ep.namespace}/${ep.name}`),
        );
        const name = ipsetName(set.description);
        const comment = [
          "-m",
          "comment",
          "--comment",
          clip(`DefaultAllow ${direction} isolation for namespace: ${ns}`),
        ];
        if (direction === "ingress") {
          this.add(DEFAULT_CHAIN, [
            "-m",
            "set",
            "--match-set",
            name,
            "dst",
            ...comment,
            "-j",
            "ACCEPT",
          ]);
        } else {
          const args = ["-m", "set", "--match-set", name, "src", ...comment];
          this.add(EGRESS_DEFAULT_CHAIN, [...args, "-j", EGRESS_ACCEPT_CHAIN]);
          this.add(EGRESS_DEFAULT_CHAIN, [...args, "-j", "RETURN"]);
        }
      }
    }
  }

  result(staticRules: readonly NpcRule[], hooks: readonly NpcRule[]): NpcPlan {
    if (this.issues.length > 0) throw new NpcPlanError([...new Set(this.issues)]);
    const sets: Ipset[] = [...this.sets.keys()].sort().map((name) => {
      const b = this.sets.get(name) as SetBuilder;
      const entries = [...b.entries.keys()].sort().map((value) => {
        const comment = b.entries.get(value);
        return comment === undefined ? { value } : { value, comment };
      });
      return { name, type: b.type, description: b.description, entries };
    });
    // Our chains' rules grouped by chain, static ones first in each.
    const rules = NPC_CHAINS.flatMap((chain) =>
      [...staticRules, ...this.rules].filter((r) => r.chain === chain),
    );
    return {
      sets,
      rules,
      hooks,
      iptablesRestore: restoreText(rules),
      allowRules: [...this.allowOwners.values()].map((o) => ({
        rule: o.rule,
        policies: [...o.policies].sort(),
      })),
    };
  }
}

/** The static rules of spec 7; the egress drop only when some policy has Egress. */
function staticRules(opts: ResolvedOptions, egressDrop: boolean): NpcRule[] {
  const state = (s: string): string[] => ["-m", "state", "--state", s];
  const notMarked = ["-m", "mark", "!", "--mark", EGRESS_MARK];
  const ports = opts.routerPorts;
  const mcast = opts.allowMulticast;
  const rules: (NpcRule | false)[] = [
    { chain: NPC_CHAIN, args: [...state("RELATED,ESTABLISHED"), "-j", "ACCEPT"] },
    mcast && { chain: NPC_CHAIN, args: ["-d", MULTICAST, "-j", "ACCEPT"] },
    ...ports.map((port) => ({
      chain: NPC_CHAIN,
      args: ["-m", "physdev", "--physdev-out", port, "--physdev-is-bridged", "-j", "ACCEPT"],
    })),
    { chain: NPC_CHAIN, args: [...state("NEW"), "-j", DEFAULT_CHAIN] },
    { chain: NPC_CHAIN, args: [...state("NEW"), "-j", INGRESS_CHAIN] },
    { chain: EGRESS_CHAIN, args: [...state("RELATED,ESTABLISHED"), "-j", "ACCEPT"] },
    ...ports.map((port) => ({
      chain: EGRESS_CHAIN,
      args: ["-m", "physdev", "--physdev-in", port, "--physdev-is-bridged", "-j", "RETURN"],
    })),
    { chain: EGRESS_CHAIN, args: ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "RETURN"] },
    mcast && { chain: EGRESS_CHAIN, args: ["-d", MULTICAST, "-j", "RETURN"] },
    { chain: EGRESS_CHAIN, args: [...state("NEW"), "-j", EGRESS_DEFAULT_CHAIN] },
    { chain: EGRESS_CHAIN, args: [...state("NEW"), ...notMarked, "-j", EGRESS_CUSTOM_CHAIN] },
    egressDrop && {
      chain: EGRESS_CHAIN,
      args: [...state("NEW"), ...notMarked, "-j", "NFLOG", "--nflog-group", NFLOG_GROUP],
    },
    egressDrop && { chain: EGRESS_CHAIN, args: [...notMarked, "-j", "DROP"] },
    { chain: EGRESS_ACCEPT_CHAIN, args: ["-j", "MARK", "--set-xmark", EGRESS_MARK] },
  ];
  return rules.filter((r): r is NpcRule => r !== false);
}

/**
 * Plans the ipsets and iptables rules that enforce `input.policies`. Throws NpcPlanError,
 * listing every problem, on input iptables or ipset could not take (addresses that are not
 * IPv4, ports out of range, comment text with quotes or control characters, ...).
 */
export function planNpc(input: NpcInput, opts: NpcOptions = {}): NpcPlan {
  const o = resolvedOptions(opts);
  const planner = new Planner(input);
  const byKey = new Map(input.policies.map((p) => [policyKey(p), p]));
  const selected = { ingress: new Set<string>(), egress: new Set<string>() };
  let anyEgress = false;
  for (const key of [...byKey.keys()].sort()) {
    const r = planner.policy(byKey.get(key) as NetworkPolicy);
    anyEgress ||= r.egress;
    for (const ep of r.selected) {
      if (r.ingress) selected.ingress.add(ep);
      if (r.egress) selected.egress.add(ep);
    }
  }
  planner.defaults(selected);
  // The caller's options, not the resolved ones: hookRules resolves them itself.
  return planner.result(staticRules(o, anyEgress), hookRules(opts));
}
