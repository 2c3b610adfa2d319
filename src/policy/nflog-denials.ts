/**
 * The kernel path's denied flows: the packets Weave-NPC's rules dropped and logged to NFLOG
 * group 86 (nflog-reader.ts), each turned into a denied-flow record as the userspace enforcer
 * makes them. The log says only "this packet was dropped", not by which rule, so the flow is
 * judged again against the controller's current picture with the enforcer's own code
 * (`judgeFlow`), which names the direction, the endpoint and the policies.
 *
 * Differences from the switch path, on purpose:
 * - "local" means an endpoint on the kernel bridge here (iptables judges it), not on a TAP;
 * - iptables judges egress before ingress and drops at the first denial, so a packet denied
 *   both ways is logged once, as egress; it is recorded once too;
 * - a logged packet the picture does not deny (the policies changed since, or one of Weave's
 *   static rules dropped it, e.g. egress from an address that is no endpoint) is counted as
 *   unattributed, not recorded.
 */
import { type DeniedFlow, type DenyLogger, DenyLog } from "./deny-log.js";
import { judgeFlow } from "./enforcer.js";
import { type EnforcedEndpoint, EndpointRegistry } from "./endpoints.js";
import { type PolicyMatcher, compilePolicies } from "./matcher.js";
import { type Namespace, type NetworkPolicy, policyKey } from "./model.js";
import {
  ETHERTYPE_IPV4,
  IPPROTO_UDP,
  PARSE_OK,
  type ParseStatus,
  ParsedPacket,
  parseFrame,
} from "./packet.js";

const ETH_HEADER_LEN = 14;

export interface KernelDenialsOptions {
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** Where denied flows are logged (rate-limited as the switch path's); none when absent. */
  log?: DenyLogger;
  /** Denied flows kept for `lastDenied()` (default 256). */
  maxDenyLog?: number;
}

export interface KernelDenialsStats {
  /** Logged packets handed in. */
  received: number;
  /** Of `received`: not IPv4 that could be read. */
  unreadable: number;
  /** Of `received`: readable, but the current picture denies it nowhere here. */
  unattributed: number;
  /** Of `received`: recorded as a denied flow. */
  recorded: number;
  denyLog: { logged: number; suppressed: number };
}

/**
 * Parses a logged IPv4 packet (`payload`, perhaps cut at the log's copy range) with the switch's
 * frame parser, behind a blank Ethernet header. A cut packet claims more than it holds, which
 * the parser rightly calls malformed; so the copy's IPv4 (and UDP) lengths are set to what is
 * there: only the headers are read.
 */
export function parseLoggedPacket(payload: Uint8Array, out: ParsedPacket): ParseStatus {
  const frame = frameOf(payload);
  return parseFrame(frame, 0, frame.length, out);
}

function frameOf(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(ETH_HEADER_LEN + payload.length);
  frame[12] = ETHERTYPE_IPV4 >> 8;
  frame[13] = ETHERTYPE_IPV4 & 0xff;
  frame.set(payload, ETH_HEADER_LEN);
  const ip = ETH_HEADER_LEN;
  if (payload.length < 20 || payload[0]! >> 4 !== 4) return frame;
  const totalLength = (payload[2]! << 8) | payload[3]!;
  if (totalLength <= payload.length) return frame;
  frame[ip + 2] = payload.length >> 8;
  frame[ip + 3] = payload.length & 0xff;
  const headerLength = (payload[0]! & 0x0f) * 4;
  const firstFragment = (((payload[6]! << 8) | payload[7]!) & 0x1fff) === 0;
  const l4Len = payload.length - headerLength;
  if (payload[9] === IPPROTO_UDP && firstFragment && l4Len >= 8) {
    const udp = ip + headerLength;
    frame[udp + 4] = l4Len >> 8;
    frame[udp + 5] = l4Len & 0xff;
  }
  return frame;
}

export class KernelDenials {
  private readonly clock: () => number;
  private readonly registry = new EndpointRegistry();
  private readonly denyLog: DenyLog;
  private readonly pkt = new ParsedPacket();
  private policies: readonly NetworkPolicy[] = [];
  private namespaces: readonly Namespace[] = [];
  /** undefined after a policy change, until the next packet. */
  private matcher: PolicyMatcher | undefined;
  private perPolicy = new Map<string, number>();
  private received = 0;
  private unreadable = 0;
  private unattributed = 0;

  constructor(options: KernelDenialsOptions = {}) {
    this.clock = options.now ?? Date.now;
    this.denyLog = new DenyLog({
      ...(options.maxDenyLog !== undefined ? { maxEntries: options.maxDenyLog } : {}),
      ...(options.log !== undefined ? { log: options.log } : {}),
    });
  }

  /** The policies in force; counts of policies that remain are kept. */
  setPolicies(policies: readonly NetworkPolicy[], namespaces: readonly Namespace[]): void {
    this.policies = [...policies];
    this.namespaces = [...namespaces];
    this.matcher = undefined;
    const counts = new Map<string, number>();
    for (const key of this.policies.map(policyKey)) counts.set(key, this.perPolicy.get(key) ?? 0);
    this.perPolicy = counts;
  }

  /** Every endpoint known; `local` ones are those on this host's kernel bridge. */
  setEndpoints(endpoints: readonly EnforcedEndpoint[]): void {
    this.registry.replaceAll(endpoints);
  }

  /** Records the dropped IPv4 packet `payload`; returns the denied flow, if it names one. */
  record(payload: Uint8Array): DeniedFlow | undefined {
    this.received++;
    const pkt = this.pkt;
    if (parseLoggedPacket(payload, pkt) !== PARSE_OK) {
      this.unreadable++;
      return undefined;
    }
    const roles = this.registry.localRoles(pkt);
    const judged =
      roles === 0 ? [] : judgeFlow(this.compiled(), this.registry, pkt, roles, this.clock());
    // As iptables: egress first, and one drop per packet.
    const denied =
      judged.find((j) => j.direction === "egress" && j.denied !== undefined) ??
      judged.find((j) => j.denied !== undefined);
    if (denied?.denied === undefined) {
      this.unattributed++;
      return undefined;
    }
    for (const key of denied.verdict.policies) {
      const count = this.perPolicy.get(key);
      if (count !== undefined) this.perPolicy.set(key, count + 1);
    }
    this.denyLog.record(denied.denied);
    return denied.denied;
  }

  private compiled(): PolicyMatcher {
    // Without endpoints, as the enforcer's: flow ends come resolved from the registry.
    this.matcher ??= compilePolicies({ policies: this.policies, namespaces: this.namespaces });
    return this.matcher;
  }

  /** Denied flows per policy in force (`namespace/name`). */
  deniedPerPolicy(): ReadonlyMap<string, number> {
    return this.perPolicy;
  }

  /** The last denied flows, oldest first. */
  lastDenied(): DeniedFlow[] {
    return this.denyLog.recent();
  }

  stats(): KernelDenialsStats {
    return {
      received: this.received,
      unreadable: this.unreadable,
      unattributed: this.unattributed,
      recorded: this.denyLog.recorded,
      denyLog: { logged: this.denyLog.logged, suppressed: this.denyLog.suppressed },
    };
  }
}
