/**
 * Kubernetes NetworkPolicy enforced in userspace on the frames of weft's switch, as weave-npc
 * enforces it with iptables (weave-wire.md section 7). Pure: the caller hands in frames and
 * changes, and gets verdicts, counters and denied flows back.
 *
 * Per frame (`checkFrame`, true = pass):
 * - ARP passes. Other frames that are not IPv4 pass too, as Weave's NPC (iptables, no ip6tables)
 *   let them: the policy model holds IPv4 endpoints only, so it could say nothing about IPv6
 *   except "drop all of it", which would break every IPv6 user, selected or not. The exception is
 *   a frame with stacked VLAN tags (802.1Q in 802.1Q, or 802.1ad outside): the parser does not
 *   look inside, so it could carry IPv4 past the policy, and nothing on a pod network needs one;
 *   it is dropped.
 * - IPv4 that does not parse is dropped: it cannot be judged, and the receiving stack would
 *   discard it anyway.
 * - Multicast destinations (224.0.0.0/4) pass, as with Weave's `--allow-mcast` (its default);
 *   `allowMulticast: false` judges them like any other address.
 * - Only local endpoints are enforcement targets: ingress is judged on the destination's host,
 *   egress on the source's; a frame between two local endpoints gets both checks, a frame
 *   between two addresses that are not local endpoints passes untouched (and untracked).
 * - A frame of a tracked flow ("established", or a "related" ICMP error) passes without looking
 *   at the policy: no allocation, no policy work. A "new" flow is judged once; if allowed, it is
 *   tracked. A frame the tracker calls "invalid" (mid-stream TCP after a restart or an eviction,
 *   an unsolicited reply, an ICMP error about nothing tracked) is judged like a new flow but
 *   never tracked: the tracker is stricter than Linux's in picking up flows, and dropping what
 *   the policy would admit as a new flow would cut every connection of an unselected pod at a
 *   restart.
 *
 * A denied flow is dropped, counted against each policy that selects the endpoint and did not
 * allow it, and recorded in the deny log (deny-log.ts). Each policy that allows a direction of a
 * flow counts it as allowed, also when the other direction is denied.
 *
 * Changes: `setPolicies` replaces the policies and namespace labels; the matcher is compiled
 * again on the next flow that needs judging, so the change applies to new flows at once, while
 * tracked flows keep going. Endpoint changes need no compilation: the matcher is compiled
 * without endpoints and each flow end is resolved here (endpoints.ts), with the matcher's rule
 * for an address several endpoints claim.
 *
 * One enforcer per network: the tracker does not key on the VLAN, so overlapping address spaces
 * need separate enforcers.
 */

import { formatAddress } from "../ipam/address.js";
import { isVlanEtherType } from "../wire/ethernet.js";
import { ConnTracker, type ConnTrackerOptions } from "./conntrack.js";
import { type DeniedFlow, type DenyLogger, DenyLog } from "./deny-log.js";
import { DST_LOCAL, type EnforcedEndpoint, EndpointRegistry, SRC_LOCAL } from "./endpoints.js";
import {
  type Direction,
  type FlowEnd,
  type PolicyMatcher,
  type Verdict,
  compilePolicies,
} from "./matcher.js";
import { type Namespace, type NetworkPolicy, policyKey } from "./model.js";
import {
  IPPROTO_ICMP,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  PARSE_NOT_IPV4,
  PARSE_OK,
  ParsedPacket,
  parseFrame,
} from "./packet.js";

export const ETHERTYPE_ARP = 0x0806;
export const DEFAULT_ENFORCER_CONNTRACK_ENTRIES = 65_536;

export interface PolicyEnforcerOptions {
  /** Clock in ms (default Date.now), for the tracker and the deny log. */
  now?: () => number;
  /** Where denied flows are logged (rate-limited); none when absent. */
  log?: DenyLogger;
  /** Denied flows kept for `lastDenied()` (default 256). */
  maxDenyLog?: number;
  /** Deny log lines per second in the long run (default 10). */
  logRatePerSecond?: number;
  /** Deny log lines at once after a quiet spell (default max(1, logRatePerSecond); 0 at rate 0). */
  logBurst?: number;
  /** Let multicast through unjudged, as Weave's `--allow-mcast` (default true). */
  allowMulticast?: boolean;
  /** The connection tracker's options; maxEntries defaults to 65536, the clock is `now`. */
  conntrack?: Partial<Omit<ConnTrackerOptions, "now">>;
}

export interface PolicyCounters {
  /** Flows (one count per direction judged) this policy allowed. */
  allowed: number;
  /** Flows (one per direction judged) this policy selected for and did not allow. */
  denied: number;
}

export interface EnforcerStats {
  /** Per policy in force (`namespace/name`), a copy. */
  perPolicy: Map<string, PolicyCounters>;
  /** Frames judged against the policy (new flows, and frames the tracker calls invalid). */
  evaluated: number;
  /** Of `evaluated`: frames the tracker called invalid (judged, never tracked). */
  evaluatedUntracked: number;
  /** Of `evaluated`: passed. */
  allowed: number;
  /** Of `evaluated`: dropped. */
  deniedTotal: number;
  /** Frames of tracked flows (established or related). */
  passedEstablished: number;
  passedArp: number;
  /** Frames that are neither IPv4 nor ARP (IPv6, ...). */
  passedNonIpv4: number;
  /** IPv4 frames with no local endpoint at either end, or to a multicast address. */
  passedUnenforced: number;
  /** IPv4 that did not parse, and frames with a second VLAN tag. */
  droppedUnreadable: number;
  /** Times the matcher was compiled. */
  compiles: number;
  denyLog: { recorded: number; logged: number; suppressed: number };
  conntrack: { entries: number; evicted: number; expired: number };
}

export function protocolName(protocol: number): string {
  switch (protocol) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    case IPPROTO_SCTP:
      return "SCTP";
    case IPPROTO_ICMP:
      return "ICMP";
    default:
      return `ip-proto-${protocol}`;
  }
}

function isMulticast(address: number): boolean {
  return address >>> 28 === 0xe;
}

/** The verdict on one direction of a flow, and the denied flow when it denies. */
export interface DirectionJudgement {
  readonly direction: Direction;
  readonly verdict: Verdict;
  readonly denied?: DeniedFlow;
}

function flowEnd(endpoints: EndpointRegistry, address: number): FlowEnd {
  const endpoint = endpoints.owner(address);
  return endpoint === undefined ? { ip: address } : { ip: address, endpoint };
}

/**
 * Judges the flow of `pkt` in the directions `roles` (from `endpoints.localRoles`) names:
 * ingress into a local destination first, then egress out of a local source. Shared by the
 * userspace enforcer and the record of the kernel path's drops, so both name a denial alike.
 */
export function judgeFlow(
  matcher: PolicyMatcher,
  endpoints: EndpointRegistry,
  pkt: ParsedPacket,
  roles: number,
  now: number,
): DirectionJudgement[] {
  const src = flowEnd(endpoints, pkt.src);
  const dst = flowEnd(endpoints, pkt.dst);
  const protocol = protocolName(pkt.protocol);
  const port = pkt.hasPorts ? pkt.dstPort : undefined;
  const decision = matcher.decide({
    src,
    dst,
    protocol,
    ...(port !== undefined ? { port } : {}),
  });
  const directions: [Direction, Verdict, FlowEnd][] = [];
  if ((roles & DST_LOCAL) !== 0) directions.push(["ingress", decision.ingress, dst]);
  if ((roles & SRC_LOCAL) !== 0) directions.push(["egress", decision.egress, src]);
  return directions.map(([direction, verdict, target]) => {
    if (verdict.allowed) return { direction, verdict };
    const ep = target.endpoint as EnforcedEndpoint; // a local end is an endpoint
    return {
      direction,
      verdict,
      denied: {
        time: now,
        direction,
        from: formatAddress(pkt.src),
        to: formatAddress(pkt.dst),
        protocol,
        ...(port !== undefined ? { port } : {}),
        namespace: ep.namespace,
        endpoint: ep.name,
        policies: verdict.policies,
      },
    };
  });
}

export class PolicyEnforcer {
  readonly conntrack: ConnTracker;
  private readonly clock: () => number;
  private readonly allowMulticast: boolean;
  private readonly endpoints = new EndpointRegistry();
  private readonly denyLog: DenyLog;
  /** Reused for every frame. */
  private readonly pkt = new ParsedPacket();
  private policies: readonly NetworkPolicy[] = [];
  private namespaces: readonly Namespace[] = [];
  /** undefined after a policy change, until the next flow to judge. */
  private matcher: PolicyMatcher | undefined;
  private perPolicy = new Map<string, PolicyCounters>();

  private evaluated = 0;
  private evaluatedUntracked = 0;
  private allowed = 0;
  private deniedTotal = 0;
  private passedEstablished = 0;
  private passedArp = 0;
  private passedNonIpv4 = 0;
  private passedUnenforced = 0;
  private droppedUnreadable = 0;
  private compiles = 0;

  constructor(options: PolicyEnforcerOptions = {}) {
    this.clock = options.now ?? Date.now;
    this.allowMulticast = options.allowMulticast ?? true;
    this.conntrack = new ConnTracker({
      maxEntries: DEFAULT_ENFORCER_CONNTRACK_ENTRIES,
      ...options.conntrack,
      now: this.clock,
    });
    this.denyLog = new DenyLog({
      ...(options.maxDenyLog !== undefined ? { maxEntries: options.maxDenyLog } : {}),
      ...(options.log !== undefined ? { log: options.log } : {}),
      ...(options.logRatePerSecond !== undefined
        ? { ratePerSecond: options.logRatePerSecond }
        : {}),
      ...(options.logBurst !== undefined ? { burst: options.logBurst } : {}),
    });
  }

  /**
   * Puts `policies` and the namespace labels in force for new flows (compiled when first
   * needed); tracked flows are left alone. Counters of policies that remain are kept.
   */
  setPolicies(policies: readonly NetworkPolicy[], namespaces: readonly Namespace[] = []): void {
    this.policies = [...policies];
    this.namespaces = [...namespaces];
    this.matcher = undefined;
    const counters = new Map<string, PolicyCounters>();
    for (const key of this.policies.map(policyKey).sort()) {
      counters.set(key, this.perPolicy.get(key) ?? { allowed: 0, denied: 0 });
    }
    this.perPolicy = counters;
  }

  /** Adds or replaces (by namespace and name) an endpoint; `local` ones are enforced here. */
  upsertEndpoint(ep: EnforcedEndpoint): void {
    this.endpoints.upsert(ep);
  }

  /** Makes `endpoints` the whole set (e.g. a Kubernetes snapshot); unchanged objects cost nothing. */
  setEndpoints(endpoints: readonly EnforcedEndpoint[]): void {
    this.endpoints.replaceAll(endpoints);
  }

  /** Removes the endpoint `namespace/name`; false if there was none. */
  removeEndpoint(key: string): boolean {
    return this.endpoints.remove(key);
  }

  /** The endpoint `namespace/name`, if known. */
  endpoint(key: string): EnforcedEndpoint | undefined {
    return this.endpoints.get(key);
  }

  /**
   * Whether the frame `buf[offset, offset + length)` may pass. Pass `now` (read once per batch of
   * frames) on the hot path: a clock read per frame costs an allocation.
   */
  checkFrame(buf: Uint8Array, offset: number, length: number, now?: number): boolean {
    const pkt = this.pkt;
    const status = parseFrame(buf, offset, length, pkt);
    if (status !== PARSE_OK) {
      if (status === PARSE_NOT_IPV4) {
        if (pkt.etherType === ETHERTYPE_ARP) {
          this.passedArp++;
          return true;
        }
        if (!isVlanEtherType(pkt.etherType)) {
          this.passedNonIpv4++;
          return true;
        }
      }
      this.droppedUnreadable++;
      return false;
    }
    if (this.allowMulticast && isMulticast(pkt.dst)) {
      this.passedUnenforced++;
      return true;
    }
    const roles = this.endpoints.localRoles(pkt);
    if (roles === 0) {
      this.passedUnenforced++;
      return true;
    }
    const t = now ?? this.clock();
    const state = this.conntrack.classify(pkt, t);
    if (state === "established" || state === "related") {
      this.passedEstablished++;
      return true;
    }
    const allowed = this.judge(pkt, roles, t);
    if (state === "new") {
      if (allowed) this.conntrack.commit(pkt, t);
    } else {
      this.evaluatedUntracked++;
    }
    return allowed;
  }

  stats(): EnforcerStats {
    const perPolicy = new Map<string, PolicyCounters>();
    for (const [key, c] of this.perPolicy) perPolicy.set(key, { ...c });
    return {
      perPolicy,
      evaluated: this.evaluated,
      evaluatedUntracked: this.evaluatedUntracked,
      allowed: this.allowed,
      deniedTotal: this.deniedTotal,
      passedEstablished: this.passedEstablished,
      passedArp: this.passedArp,
      passedNonIpv4: this.passedNonIpv4,
      passedUnenforced: this.passedUnenforced,
      droppedUnreadable: this.droppedUnreadable,
      compiles: this.compiles,
      denyLog: {
        recorded: this.denyLog.recorded,
        logged: this.denyLog.logged,
        suppressed: this.denyLog.suppressed,
      },
      conntrack: {
        entries: this.conntrack.entries,
        evicted: this.conntrack.evicted,
        expired: this.conntrack.expired,
      },
    };
  }

  /** The last denied flows (at most `maxDenyLog`), oldest first. */
  lastDenied(): DeniedFlow[] {
    return this.denyLog.recent();
  }

  /** Judges the flow of `pkt` against the policy, in the directions enforced here. */
  private judge(pkt: ParsedPacket, roles: number, now: number): boolean {
    this.evaluated++;
    const matcher = this.matcher ?? this.compile();
    let allowed = true;
    for (const { verdict, denied } of judgeFlow(matcher, this.endpoints, pkt, roles, now)) {
      for (const key of verdict.policies) {
        const counters = this.perPolicy.get(key);
        if (counters === undefined) continue;
        if (verdict.allowed) counters.allowed++;
        else counters.denied++;
      }
      if (denied === undefined) continue;
      allowed = false;
      this.denyLog.record(denied);
    }
    if (allowed) this.allowed++;
    else this.deniedTotal++;
    return allowed;
  }

  private compile(): PolicyMatcher {
    // Without endpoints: flow ends come resolved (flowEnd), so endpoint changes need no compile.
    const matcher = compilePolicies({ policies: this.policies, namespaces: this.namespaces });
    this.matcher = matcher;
    this.compiles++;
    return matcher;
  }
}
