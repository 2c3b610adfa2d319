/**
 * Compiles a set of NetworkPolicies, endpoints and namespaces into a matcher that decides new
 * flows, with Kubernetes semantics:
 *
 * - a policy applies to the endpoints of its own namespace that its `podSelector` selects, for
 *   the directions in its `policyTypes`;
 * - an endpoint that no policy selects for a direction is open in that direction; one that some
 *   policies select is allowed exactly what the union of their rules allows;
 * - ingress is evaluated for the destination endpoint (peer = source), egress for the source
 *   endpoint (peer = destination), each only when that end is a known endpoint;
 * - a pod/namespace-selector peer matches endpoints only; an `ipBlock` peer matches by IP only,
 *   whether or not the IP belongs to an endpoint;
 * - a numeric port (or `port..endPort`) matches the destination port; a named port is resolved
 *   against the destination endpoint's declared ports (same name, same protocol) and matches
 *   nothing when the destination is not an endpoint or lacks the name; a rule with ports never
 *   matches protocols other than TCP, UDP and SCTP (e.g. ICMP), a rule without ports matches all.
 *
 * Compilation is linear in the input: policies are grouped by namespace and their selectors
 * compiled; endpoints are indexed by IP. Which policies select an endpoint is worked out on first
 * use and remembered per endpoint object, so a decision costs the rules of the policies that
 * select the endpoint(s) involved. The matcher is immutable: on any change, compile again.
 */

import {
  type Endpoint,
  type Namespace,
  type NetworkPolicy,
  type PolicyPeer,
  type PolicyPort,
  type PolicyRule,
  type Protocol,
  PROTOCOLS,
  namespaceLabels,
  parseCidr,
  parseIPv4,
  policyKey,
} from "./model.js";
import { type CompiledSelector, type Labels, compileSelector } from "./selector.js";

export type Direction = "ingress" | "egress";

/**
 * One end of a flow: its IPv4 address (a dotted quad, or the uint32 a packet parser already
 * has, which saves formatting and parsing it again per new flow) and, when known, the endpoint
 * it belongs to.
 */
export interface FlowEnd {
  readonly ip: string | number;
  /** When absent, the endpoint is looked up by `ip` among the compiled endpoints. */
  readonly endpoint?: Endpoint;
}

export interface Flow {
  readonly src: FlowEnd;
  readonly dst: FlowEnd;
  /** "TCP", "UDP", "SCTP", or anything else (e.g. "ICMP"), which only port-less rules match. */
  readonly protocol: string;
  /** Destination port, for TCP, UDP and SCTP. */
  readonly port?: number;
}

/**
 * - `not-evaluated`: the endpoint for this direction is not known (allowed, as far as this
 *   direction goes);
 * - `unselected`: no policy selects the endpoint for this direction (open);
 * - `allowed`: `policies` are the selecting policies with a rule that allows the flow;
 * - `denied`: `policies` are the selecting policies, none of which allows it.
 */
export type VerdictReason = "not-evaluated" | "unselected" | "allowed" | "denied";

export interface Verdict {
  readonly allowed: boolean;
  readonly reason: VerdictReason;
  /** `namespace/name`, sorted. */
  readonly policies: readonly string[];
}

export interface Decision {
  /** Both directions allow. */
  readonly allowed: boolean;
  /** For the destination endpoint. */
  readonly ingress: Verdict;
  /** For the source endpoint. */
  readonly egress: Verdict;
}

export interface PolicyInput {
  readonly policies: readonly NetworkPolicy[];
  /** Namespace labels; a namespace not listed has only `kubernetes.io/metadata.name`. */
  readonly namespaces?: readonly Namespace[];
  /** Every endpoint known (local or remote), for selecting peers by IP. */
  readonly endpoints?: readonly Endpoint[];
}

export interface PolicyMatcher {
  decide(flow: Flow): Decision;
  /** The endpoint an IP belongs to, if any. */
  endpointForIp(ip: string): Endpoint | undefined;
  /** The policies (`namespace/name`, sorted) that select `endpoint` for `direction`. */
  selectingPolicies(endpoint: Endpoint, direction: Direction): readonly string[];
}

type CompiledPeer =
  | { readonly kind: "pods"; readonly pod?: CompiledSelector; readonly ns?: CompiledSelector }
  | { readonly kind: "ip"; readonly network: number; readonly mask: number; readonly except: Net[] }
  | { readonly kind: "never" };

interface Net {
  readonly network: number;
  readonly mask: number;
}

type CompiledPort =
  | { readonly protocol: Protocol; readonly lo: number; readonly hi: number }
  | { readonly protocol: Protocol; readonly name: string };

interface CompiledRule {
  /** undefined = any peer. */
  readonly peers?: readonly CompiledPeer[];
  /** undefined = any port and protocol. */
  readonly ports?: readonly CompiledPort[];
}

interface CompiledPolicy {
  readonly key: string;
  readonly namespace: string;
  readonly target: CompiledSelector;
  /** undefined when the policy is not of that type. */
  readonly ingress?: readonly CompiledRule[];
  readonly egress?: readonly CompiledRule[];
}

interface Selection {
  readonly ingress: readonly CompiledPolicy[];
  readonly egress: readonly CompiledPolicy[];
}

/** A flow end resolved: numeric IP (undefined if not IPv4) and endpoint (if any). */
interface Resolved {
  readonly ip: number | undefined;
  readonly endpoint: Endpoint | undefined;
}

const NOT_EVALUATED: Verdict = Object.freeze({
  allowed: true,
  reason: "not-evaluated",
  policies: Object.freeze([]),
});
const UNSELECTED: Verdict = Object.freeze({
  allowed: true,
  reason: "unselected",
  policies: Object.freeze([]),
});

function mask32(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

function inNet(ip: number, net: Net): boolean {
  return (ip & net.mask) >>> 0 === net.network;
}

function compilePeer(peer: PolicyPeer): CompiledPeer {
  if (peer.kind === "pods") {
    return {
      kind: "pods",
      ...(peer.podSelector !== undefined ? { pod: compileSelector(peer.podSelector) } : {}),
      ...(peer.namespaceSelector !== undefined
        ? { ns: compileSelector(peer.namespaceSelector) }
        : {}),
    };
  }
  const cidr = parseCidr(peer.ipBlock.cidr);
  // An IPv6 block (or one that does not parse, which the model never produces) matches no IPv4.
  if (typeof cidr === "string" || cidr.family !== 4) return { kind: "never" };
  const except: Net[] = [];
  for (const text of peer.ipBlock.except) {
    const e = parseCidr(text);
    if (typeof e !== "string" && e.family === 4) {
      except.push({ network: Number(e.network), mask: mask32(e.prefix) });
    }
  }
  return { kind: "ip", network: Number(cidr.network), mask: mask32(cidr.prefix), except };
}

function compilePort(port: PolicyPort): CompiledPort {
  if (typeof port.port === "string") return { protocol: port.protocol, name: port.port };
  if (port.port === undefined) return { protocol: port.protocol, lo: 0, hi: 65535 };
  return { protocol: port.protocol, lo: port.port, hi: port.endPort ?? port.port };
}

function compileRule(rule: PolicyRule): CompiledRule {
  return {
    ...(rule.peers.length > 0 ? { peers: rule.peers.map(compilePeer) } : {}),
    ...(rule.ports.length > 0 ? { ports: rule.ports.map(compilePort) } : {}),
  };
}

function compilePolicy(policy: NetworkPolicy): CompiledPolicy {
  return {
    key: policyKey(policy),
    namespace: policy.namespace,
    target: compileSelector(policy.podSelector),
    ...(policy.policyTypes.includes("Ingress") ? { ingress: policy.ingress.map(compileRule) } : {}),
    ...(policy.policyTypes.includes("Egress") ? { egress: policy.egress.map(compileRule) } : {}),
  };
}

/** Compiles `input` into a matcher (see the module comment for the semantics). */
export function compilePolicies(input: PolicyInput): PolicyMatcher {
  const byKey = new Map<string, CompiledPolicy>();
  for (const policy of input.policies) byKey.set(policyKey(policy), compilePolicy(policy));
  const byNamespace = new Map<string, CompiledPolicy[]>();
  for (const key of [...byKey.keys()].sort()) {
    const policy = byKey.get(key) as CompiledPolicy;
    const list = byNamespace.get(policy.namespace);
    if (list === undefined) byNamespace.set(policy.namespace, [policy]);
    else list.push(policy);
  }

  const nsLabels = new Map<string, Labels>();
  for (const ns of input.namespaces ?? [])
    nsLabels.set(ns.name, namespaceLabels(ns.name, ns.labels));
  const labelsOfNamespace = (name: string): Labels => {
    let labels = nsLabels.get(name);
    if (labels === undefined) {
      labels = namespaceLabels(name);
      nsLabels.set(name, labels);
    }
    return labels;
  };

  // Endpoints by (namespace, name), later entries replacing earlier ones; then an IP claimed by
  // several endpoints belongs to the first in (namespace, name) order.
  const endpointsByKey = new Map<string, Endpoint>();
  for (const ep of input.endpoints ?? []) endpointsByKey.set(`${ep.namespace}/${ep.name}`, ep);
  const byIp = new Map<number, Endpoint>();
  for (const key of [...endpointsByKey.keys()].sort()) {
    const ep = endpointsByKey.get(key) as Endpoint;
    for (const ip of ep.ips) {
      const n = parseIPv4(ip);
      if (n !== undefined && !byIp.has(n)) byIp.set(n, ep);
    }
  }

  const selections = new WeakMap<Endpoint, Selection>();
  const selection = (ep: Endpoint): Selection => {
    let sel = selections.get(ep);
    if (sel === undefined) {
      const ingress: CompiledPolicy[] = [];
      const egress: CompiledPolicy[] = [];
      for (const policy of byNamespace.get(ep.namespace) ?? []) {
        if (!policy.target(ep.labels)) continue;
        if (policy.ingress !== undefined) ingress.push(policy);
        if (policy.egress !== undefined) egress.push(policy);
      }
      sel = { ingress, egress };
      selections.set(ep, sel);
    }
    return sel;
  };

  const peerMatches = (peer: CompiledPeer, policyNamespace: string, end: Resolved): boolean => {
    switch (peer.kind) {
      case "pods": {
        const ep = end.endpoint;
        if (ep === undefined) return false;
        if (peer.ns === undefined) {
          if (ep.namespace !== policyNamespace) return false;
        } else if (!peer.ns(labelsOfNamespace(ep.namespace))) {
          return false;
        }
        return peer.pod === undefined || peer.pod(ep.labels);
      }
      case "ip":
        return (
          end.ip !== undefined &&
          inNet(end.ip, peer) &&
          !peer.except.some((net) => inNet(end.ip as number, net))
        );
      case "never":
        return false;
    }
  };

  const portMatches = (
    port: CompiledPort,
    protocol: string,
    dstPort: number | undefined,
    dst: Endpoint | undefined,
  ): boolean => {
    if (port.protocol !== protocol) return false;
    if ("name" in port) {
      return (
        dstPort !== undefined &&
        dst !== undefined &&
        dst.ports.some((p) => p.name === port.name && p.protocol === protocol && p.port === dstPort)
      );
    }
    if (port.lo === 0) return true; // every port of the protocol
    return dstPort !== undefined && dstPort >= port.lo && dstPort <= port.hi;
  };

  const evaluate = (
    target: Endpoint,
    direction: Direction,
    peer: Resolved,
    dst: Endpoint | undefined,
    protocol: string,
    dstPort: number | undefined,
  ): Verdict => {
    const selecting = selection(target)[direction];
    if (selecting.length === 0) return UNSELECTED;
    const portProtocol = (PROTOCOLS as readonly string[]).includes(protocol);
    const allowedBy: string[] = [];
    for (const policy of selecting) {
      const rules = policy[direction] as readonly CompiledRule[];
      const allows = rules.some(
        (rule) =>
          (rule.ports === undefined ||
            (portProtocol && rule.ports.some((p) => portMatches(p, protocol, dstPort, dst)))) &&
          (rule.peers === undefined ||
            rule.peers.some((p) => peerMatches(p, policy.namespace, peer))),
      );
      if (allows) allowedBy.push(policy.key);
    }
    if (allowedBy.length > 0) return { allowed: true, reason: "allowed", policies: allowedBy };
    return { allowed: false, reason: "denied", policies: selecting.map((p) => p.key) };
  };

  const resolve = (end: FlowEnd): Resolved => {
    const ip = typeof end.ip === "number" ? end.ip : parseIPv4(end.ip);
    return { ip, endpoint: end.endpoint ?? (ip === undefined ? undefined : byIp.get(ip)) };
  };

  return {
    decide(flow: Flow): Decision {
      const src = resolve(flow.src);
      const dst = resolve(flow.dst);
      const ingress =
        dst.endpoint === undefined
          ? NOT_EVALUATED
          : evaluate(dst.endpoint, "ingress", src, dst.endpoint, flow.protocol, flow.port);
      const egress =
        src.endpoint === undefined
          ? NOT_EVALUATED
          : evaluate(src.endpoint, "egress", dst, dst.endpoint, flow.protocol, flow.port);
      return { allowed: ingress.allowed && egress.allowed, ingress, egress };
    },
    endpointForIp(ip: string): Endpoint | undefined {
      const n = parseIPv4(ip);
      return n === undefined ? undefined : byIp.get(n);
    },
    selectingPolicies(endpoint: Endpoint, direction: Direction): readonly string[] {
      return selection(endpoint)[direction].map((p) => p.key);
    },
  };
}
