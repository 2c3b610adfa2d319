/**
 * Differential property: after any random sequence of policy / namespace-label / endpoint changes,
 * the compiled matcher decides random flows exactly as a straightforward reference evaluator
 * written here, independently, over the raw Kubernetes-shaped objects (as YAML would give them:
 * defaults not applied, fields absent or present).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compilePolicies, type Verdict } from "../../../src/policy/matcher.js";
import {
  type Endpoint,
  type EndpointPort,
  makeNamespace,
  networkPolicyFromObject,
} from "../../../src/policy/model.js";

// ----- raw shapes -----------------------------------------------------------------------------

interface RawRequirement {
  key: string;
  operator: string;
  values?: readonly string[];
}
interface RawSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: RawRequirement[];
}
interface RawPeer {
  podSelector?: RawSelector;
  namespaceSelector?: RawSelector;
  ipBlock?: { cidr: string; except?: string[] };
}
interface RawPort {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}
interface RawRule {
  from?: RawPeer[];
  to?: RawPeer[];
  ports?: RawPort[];
}
interface RawPolicy {
  apiVersion: string;
  kind: string;
  metadata: { namespace: string; name: string };
  spec: {
    podSelector: RawSelector;
    policyTypes?: readonly string[];
    ingress?: RawRule[];
    egress?: RawRule[];
  };
}

// ----- the universe ---------------------------------------------------------------------------

const NAMESPACES = ["a", "b", "c"];
const ENDPOINT_NAMES = ["e1", "e2", "e3"];
const POLICY_NAMES = ["p1", "p2", "p3"];
const KEYS = ["app", "tier", "env"];
const VALUES = ["x", "y"];
/** Every possible endpoint has its own fixed address: 10.0.<ns>.<n>. */
const endpointIp = (ns: string, name: string) =>
  `10.0.${NAMESPACES.indexOf(ns)}.${ENDPOINT_NAMES.indexOf(name) + 1}`;
const OUTSIDE = ["10.0.7.1", "10.1.0.1", "192.168.0.9", "8.8.8.8"];
/** Every address a flow may use. */
const ALL_IPS = [
  ...NAMESPACES.flatMap((ns) => ENDPOINT_NAMES.map((n) => endpointIp(ns, n))),
  ...OUTSIDE,
];
const PORTS = [53, 80, 8080, 8085, 9090];
const PORT_NAMES = ["http", "dns", "metrics", "nope"];
const ENDPOINT_PORTS: EndpointPort[][] = [
  [{ name: "http", port: 80, protocol: "TCP" }],
  [{ name: "http", port: 8080, protocol: "TCP" }],
  [{ name: "dns", port: 53, protocol: "UDP" }],
  [{ name: "dns", port: 53, protocol: "TCP" }],
  [{ name: "metrics", port: 9090, protocol: "TCP" }],
];

// ----- the reference evaluator ----------------------------------------------------------------

function bits(ip: string): string {
  return ip
    .split(".")
    .map((o) => Number(o).toString(2).padStart(8, "0"))
    .join("");
}

function refInCidr(ip: string, cidr: string): boolean {
  const [addr, len] = cidr.split("/") as [string, string];
  const n = Number(len);
  return bits(ip).slice(0, n) === bits(addr).slice(0, n);
}

function refSelects(sel: RawSelector, labels: Record<string, string>): boolean {
  const has = (k: string) => Object.prototype.hasOwnProperty.call(labels, k);
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    if (!has(k) || labels[k] !== v) return false;
  }
  for (const e of sel.matchExpressions ?? []) {
    const values = e.values ?? [];
    if (e.operator === "In" && !(has(e.key) && values.includes(labels[e.key] as string))) {
      return false;
    }
    if (e.operator === "NotIn" && has(e.key) && values.includes(labels[e.key] as string)) {
      return false;
    }
    if (e.operator === "Exists" && !has(e.key)) return false;
    if (e.operator === "DoesNotExist" && has(e.key)) return false;
  }
  return true;
}

interface World {
  policies: Map<string, RawPolicy>;
  nsLabels: Map<string, Record<string, string>>;
  endpoints: Map<string, Endpoint>;
}

function refTypes(p: RawPolicy): readonly string[] {
  if (p.spec.policyTypes !== undefined && p.spec.policyTypes.length > 0) return p.spec.policyTypes;
  return (p.spec.egress ?? []).length > 0 ? ["Ingress", "Egress"] : ["Ingress"];
}

function refEndpointAt(w: World, ip: string): Endpoint | undefined {
  return [...w.endpoints.values()].find((e) => e.ips.includes(ip));
}

function refPeer(w: World, peer: RawPeer, policyNs: string, ip: string, e?: Endpoint): boolean {
  if (peer.ipBlock !== undefined) {
    return (
      refInCidr(ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((x) => refInCidr(ip, x))
    );
  }
  if (e === undefined) return false;
  if (peer.namespaceSelector === undefined) {
    if (e.namespace !== policyNs) return false;
  } else {
    const labels = {
      ...(w.nsLabels.get(e.namespace) ?? {}),
      "kubernetes.io/metadata.name": e.namespace,
    };
    if (!refSelects(peer.namespaceSelector, labels)) return false;
  }
  return peer.podSelector === undefined || refSelects(peer.podSelector, e.labels);
}

function refPort(p: RawPort, protocol: string, port: number | undefined, dst?: Endpoint): boolean {
  if ((p.protocol ?? "TCP") !== protocol) return false;
  if (p.port === undefined) return true;
  if (port === undefined) return false;
  if (typeof p.port === "string") {
    return (dst?.ports ?? []).some(
      (dp) => dp.name === p.port && dp.protocol === protocol && dp.port === port,
    );
  }
  return port >= p.port && port <= (p.endPort ?? p.port);
}

/** "n/a" | "open" | "allow:keys" | "deny:keys" */
function refDirection(
  w: World,
  dir: "ingress" | "egress",
  target: Endpoint | undefined,
  peerIp: string,
  peer: Endpoint | undefined,
  dst: Endpoint | undefined,
  protocol: string,
  port: number | undefined,
): string {
  if (target === undefined) return "n/a";
  const type = dir === "ingress" ? "Ingress" : "Egress";
  const selecting = [...w.policies.values()]
    .filter(
      (p) =>
        p.metadata.namespace === target.namespace &&
        refTypes(p).includes(type) &&
        refSelects(p.spec.podSelector, target.labels),
    )
    .map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p] as const)
    .sort((x, y) => (x[0] < y[0] ? -1 : 1));
  if (selecting.length === 0) return "open";
  const allowing = selecting.filter(([, p]) =>
    (p.spec[dir] ?? []).some((rule) => {
      const peers = (dir === "ingress" ? rule.from : rule.to) ?? [];
      const ports = rule.ports ?? [];
      const portOk = ports.length === 0 || ports.some((rp) => refPort(rp, protocol, port, dst));
      const peerOk =
        peers.length === 0 ||
        peers.some((rp) => refPeer(w, rp, p.metadata.namespace, peerIp, peer));
      return portOk && peerOk;
    }),
  );
  if (allowing.length > 0) return `allow:${allowing.map(([k]) => k).join(",")}`;
  return `deny:${selecting.map(([k]) => k).join(",")}`;
}

function show(v: Verdict): string {
  if (v.reason === "not-evaluated") return "n/a";
  if (v.reason === "unselected") return "open";
  return `${v.reason === "allowed" ? "allow" : "deny"}:${v.policies.join(",")}`;
}

// ----- generators -----------------------------------------------------------------------------

const labelsArb = fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), {
  maxKeys: 3,
});

const requirementArb: fc.Arbitrary<RawRequirement> = fc.oneof(
  fc.record({
    key: fc.constantFrom(...KEYS),
    operator: fc.constantFrom("In", "NotIn"),
    values: fc.uniqueArray(fc.constantFrom(...VALUES), { minLength: 1, maxLength: 2 }),
  }),
  fc.record(
    {
      key: fc.constantFrom(...KEYS),
      operator: fc.constantFrom("Exists", "DoesNotExist"),
      values: fc.constant([]),
    },
    { requiredKeys: ["key", "operator"] },
  ),
);

const selectorArb: fc.Arbitrary<RawSelector> = fc.record(
  {
    matchLabels: fc.dictionary(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES), {
      maxKeys: 2,
    }),
    matchExpressions: fc.array(requirementArb, { maxLength: 2 }),
  },
  { requiredKeys: [] },
);

const PREFIXES = [0, 8, 16, 23, 24, 30, 32];

const ipBlockArb = fc
  .record({
    ip: fc.constantFrom(...ALL_IPS),
    prefix: fc.constantFrom(...PREFIXES),
    excepts: fc.array(
      fc.record({ ip: fc.constantFrom(...ALL_IPS), prefix: fc.constantFrom(...PREFIXES) }),
      { maxLength: 2 },
    ),
    withExcept: fc.boolean(),
  })
  .map(({ ip, prefix, excepts, withExcept }) => {
    const cidr = `${ip}/${prefix}`; // host bits may be set, as Kubernetes allows
    const except = excepts
      .filter((e) => e.prefix > prefix && refInCidr(e.ip, cidr))
      .map((e) => `${e.ip}/${e.prefix}`);
    return withExcept ? { cidr, except } : { cidr };
  });

const peerArb: fc.Arbitrary<RawPeer> = fc.oneof(
  fc.record({ podSelector: selectorArb }),
  fc.record({ namespaceSelector: selectorArb }),
  fc.record({ podSelector: selectorArb, namespaceSelector: selectorArb }),
  fc.record({ ipBlock: ipBlockArb }),
);

const portArb: fc.Arbitrary<RawPort> = fc.oneof(
  fc.record(
    { protocol: fc.constantFrom("TCP", "UDP", "SCTP"), port: fc.constantFrom(...PORTS) },
    { requiredKeys: [] },
  ),
  fc.record(
    { protocol: fc.constantFrom("TCP", "UDP"), port: fc.constantFrom(...PORT_NAMES) },
    { requiredKeys: ["port"] },
  ),
  fc
    .record({ port: fc.constantFrom(...PORTS), width: fc.constantFrom(0, 5, 1000) })
    .map(({ port, width }) => ({ port, endPort: port + width })),
);

const ruleArb = (peersKey: "from" | "to"): fc.Arbitrary<RawRule> =>
  fc.record(
    {
      [peersKey]: fc.array(peerArb, { maxLength: 2 }),
      ports: fc.array(portArb, { maxLength: 2 }),
    },
    { requiredKeys: [] },
  );

const policyArb: fc.Arbitrary<RawPolicy> = fc
  .record({
    namespace: fc.constantFrom(...NAMESPACES),
    name: fc.constantFrom(...POLICY_NAMES),
    podSelector: selectorArb,
    policyTypes: fc.option(
      fc.constantFrom([], ["Ingress"], ["Egress"], ["Ingress", "Egress"], ["Egress", "Ingress"]),
      { nil: undefined },
    ),
    ingress: fc.option(fc.array(ruleArb("from"), { maxLength: 2 }), { nil: undefined }),
    egress: fc.option(fc.array(ruleArb("to"), { maxLength: 2 }), { nil: undefined }),
  })
  .map(({ namespace, name, podSelector, policyTypes, ingress, egress }) => ({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name },
    spec: {
      podSelector,
      ...(policyTypes !== undefined ? { policyTypes } : {}),
      ...(ingress !== undefined ? { ingress } : {}),
      ...(egress !== undefined ? { egress } : {}),
    },
  }));

type Change =
  | { op: "putPolicy"; policy: RawPolicy }
  | { op: "deletePolicy"; namespace: string; name: string }
  | { op: "nsLabels"; namespace: string; labels: Record<string, string> }
  | {
      op: "putEndpoint";
      namespace: string;
      name: string;
      labels: Record<string, string>;
      ports: number[];
    }
  | { op: "deleteEndpoint"; namespace: string; name: string }
  | { op: "relabel"; namespace: string; name: string; labels: Record<string, string> };

const nsArb = fc.constantFrom(...NAMESPACES);
const epNameArb = fc.constantFrom(...ENDPOINT_NAMES);

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("putPolicy" as const), policy: policyArb }), weight: 4 },
  fc.record({
    op: fc.constant("deletePolicy" as const),
    namespace: nsArb,
    name: fc.constantFrom(...POLICY_NAMES),
  }),
  fc.record({ op: fc.constant("nsLabels" as const), namespace: nsArb, labels: labelsArb }),
  {
    arbitrary: fc
      .tuple(nsArb, epNameArb)
      .chain(([namespace, name]) => endpointArb(namespace, name)),
    weight: 2,
  },
  fc.record({ op: fc.constant("deleteEndpoint" as const), namespace: nsArb, name: epNameArb }),
  fc.record({
    op: fc.constant("relabel" as const),
    namespace: nsArb,
    name: epNameArb,
    labels: labelsArb,
  }),
);

/** A flow end: mostly an endpoint that exists at the time (the n-th, modulo), else any address. */
const endArb = fc.record({ endpoint: fc.boolean(), n: fc.nat() });

const flowArb = fc.record({
  src: fc.oneof(
    { arbitrary: endArb, weight: 1 },
    { arbitrary: endArb.map((e) => ({ ...e, endpoint: true })), weight: 3 },
  ),
  dst: fc.oneof(
    { arbitrary: endArb, weight: 1 },
    { arbitrary: endArb.map((e) => ({ ...e, endpoint: true })), weight: 3 },
  ),
  protocol: fc.constantFrom("TCP", "TCP", "UDP", "SCTP", "ICMP"),
  port: fc.constantFrom(...PORTS, 1000, 1004, 8090),
  explicit: fc.boolean(),
});

function pickIp(w: World, end: { endpoint: boolean; n: number }): string {
  const present = [...w.endpoints.values()].map((e) => e.ips[0] as string);
  const pool = end.endpoint && present.length > 0 ? present : ALL_IPS;
  return pool[end.n % pool.length] as string;
}

const endpointArb = (namespace: string, name: string) =>
  fc.record({
    op: fc.constant("putEndpoint" as const),
    namespace: fc.constant(namespace),
    name: fc.constant(name),
    labels: labelsArb,
    // indices into ENDPOINT_PORTS; one port name per endpoint
    ports: fc.uniqueArray(fc.integer({ min: 0, max: ENDPOINT_PORTS.length - 1 }), {
      maxLength: 2,
      selector: (i) => (ENDPOINT_PORTS[i] as EndpointPort[])[0]?.name,
    }),
  });

/** The world to start from: every endpoint slot filled, some namespace labels and policies. */
const initialArb = fc.tuple(
  fc.tuple(...NAMESPACES.flatMap((ns) => ENDPOINT_NAMES.map((n) => endpointArb(ns, n)))),
  fc.array(
    fc.record({ op: fc.constant("nsLabels" as const), namespace: nsArb, labels: labelsArb }),
    {
      maxLength: 3,
    },
  ),
  fc.array(fc.record({ op: fc.constant("putPolicy" as const), policy: policyArb }), {
    maxLength: 4,
  }),
);

function apply(w: World, c: Change): void {
  switch (c.op) {
    case "putPolicy":
      w.policies.set(`${c.policy.metadata.namespace}/${c.policy.metadata.name}`, c.policy);
      break;
    case "deletePolicy":
      w.policies.delete(`${c.namespace}/${c.name}`);
      break;
    case "nsLabels":
      w.nsLabels.set(c.namespace, c.labels);
      break;
    case "putEndpoint":
      w.endpoints.set(`${c.namespace}/${c.name}`, {
        namespace: c.namespace,
        name: c.name,
        labels: c.labels,
        ips: [endpointIp(c.namespace, c.name)],
        ports: c.ports.flatMap((i) => ENDPOINT_PORTS[i] as EndpointPort[]),
      });
      break;
    case "deleteEndpoint":
      w.endpoints.delete(`${c.namespace}/${c.name}`);
      break;
    case "relabel": {
      const e = w.endpoints.get(`${c.namespace}/${c.name}`);
      if (e !== undefined) w.endpoints.set(`${c.namespace}/${c.name}`, { ...e, labels: c.labels });
      break;
    }
  }
}

describe("matcher vs reference evaluator", () => {
  it("agree on every flow after any sequence of changes", () => {
    fc.assert(
      fc.property(
        initialArb,
        fc.array(changeArb, { maxLength: 15 }),
        fc.array(flowArb, { minLength: 1, maxLength: 15 }),
        ([endpoints0, labels0, policies0], changes, flows) => {
          const w: World = { policies: new Map(), nsLabels: new Map(), endpoints: new Map() };
          const initial: Change[] = [...endpoints0, ...labels0, ...policies0];
          initial.forEach((change) => apply(w, change));
          for (const change of [undefined, ...changes]) {
            if (change !== undefined) apply(w, change);
            const policies = [...w.policies.values()].map((p) => networkPolicyFromObject(p));
            const namespaces = [...w.nsLabels].map(([name, labels]) => makeNamespace(name, labels));
            const endpoints = [...w.endpoints.values()];
            const matcher = compilePolicies({ policies, namespaces, endpoints });
            // Order of the inputs does not matter.
            const reversed = compilePolicies({
              policies: [...policies].reverse(),
              namespaces: [...namespaces].reverse(),
              endpoints: [...endpoints].reverse(),
            });
            for (const g of flows) {
              const f = { ...g, src: pickIp(w, g.src), dst: pickIp(w, g.dst) };
              const srcEp = refEndpointAt(w, f.src);
              const dstEp = refEndpointAt(w, f.dst);
              const port = f.protocol === "ICMP" ? undefined : f.port;
              const want = [
                refDirection(w, "ingress", dstEp, f.src, srcEp, dstEp, f.protocol, port),
                refDirection(w, "egress", srcEp, f.dst, dstEp, dstEp, f.protocol, port),
              ];
              const flow = {
                src:
                  f.explicit && srcEp !== undefined
                    ? { ip: f.src, endpoint: srcEp }
                    : { ip: f.src },
                dst:
                  f.explicit && dstEp !== undefined
                    ? { ip: f.dst, endpoint: dstEp }
                    : { ip: f.dst },
                protocol: f.protocol,
                ...(port !== undefined ? { port } : {}),
              };
              const d = matcher.decide(flow);
              const label = JSON.stringify({ flow: f, policies: [...w.policies.values()] });
              expect([show(d.ingress), show(d.egress)], label).toEqual(want);
              expect(d.allowed).toBe(!want[0]?.startsWith("deny") && !want[1]?.startsWith("deny"));
              expect(reversed.decide(flow)).toEqual(d);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
