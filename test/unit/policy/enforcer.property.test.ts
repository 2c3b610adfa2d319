/**
 * Differential property: after any random sequence of policy / namespace-label / endpoint
 * changes applied to one long-lived enforcer, its verdict on the first frame of a new flow is a
 * freshly compiled matcher's decision (compilePolicies over everything, endpoints included),
 * restricted to the local endpoints: ingress counts only when the destination is local, egress
 * only when the source is; and its deny records are the denied directions of that decision.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { EnforcedEndpoint } from "../../../src/policy/endpoints.js";
import { PolicyEnforcer } from "../../../src/policy/enforcer.js";
import { compilePolicies } from "../../../src/policy/matcher.js";
import {
  type EndpointPort,
  type NetworkPolicy,
  makeNamespace,
  networkPolicyFromObject,
} from "../../../src/policy/model.js";
import { ICMP_ECHO_REQUEST, TCP_SYN } from "../../../src/policy/packet.js";
import { icmpFrame, sctpFrame, tcpFrame, udpFrame } from "./frames.js";

const NAMESPACES = ["a", "b"];
const NAMES = ["e1", "e2", "e3"];
/** Few addresses, so that endpoints sometimes claim the same one. */
const ENDPOINT_IPS = ["10.32.0.1", "10.32.0.2", "10.32.0.3", "10.32.1.1", "10.32.1.2"];
const OUTSIDE_IPS = ["10.32.9.9", "192.168.0.9"];
const ALL_IPS = [...ENDPOINT_IPS, ...OUTSIDE_IPS];
const PORTS = [53, 80, 443, 8080];
const ENDPOINT_PORTS: EndpointPort[] = [
  { name: "http", port: 80, protocol: "TCP" },
  { name: "http", port: 8080, protocol: "TCP" },
  { name: "dns", port: 53, protocol: "UDP" },
];

const labelsArb = fc.dictionary(fc.constantFrom("app", "tier"), fc.constantFrom("x", "y"), {
  maxKeys: 2,
});

const selectorArb = fc.oneof(
  fc.constant({}),
  fc.record({ matchLabels: labelsArb }),
  fc.record({
    matchExpressions: fc.array(
      fc.oneof(
        fc.record({
          key: fc.constantFrom("app", "tier"),
          operator: fc.constantFrom("In", "NotIn"),
          values: fc.constantFrom(["x"], ["x", "y"]),
        }),
        fc.record({
          key: fc.constantFrom("app", "tier"),
          operator: fc.constantFrom("Exists", "DoesNotExist"),
        }),
      ),
      { maxLength: 2 },
    ),
  }),
);

const peerArb = fc.oneof(
  fc.record({ podSelector: selectorArb }),
  fc.record({ namespaceSelector: selectorArb }),
  fc.record({ podSelector: selectorArb, namespaceSelector: selectorArb }),
  fc.constantFrom(
    { ipBlock: { cidr: "10.32.0.0/16", except: ["10.32.0.0/24"] } },
    { ipBlock: { cidr: "0.0.0.0/0" } },
    { ipBlock: { cidr: "10.32.0.2/32" } },
    { ipBlock: { cidr: "192.168.0.0/16" } },
  ),
);

const portArb = fc.oneof(
  fc.record(
    { protocol: fc.constantFrom("TCP", "UDP", "SCTP"), port: fc.constantFrom(...PORTS) },
    { requiredKeys: [] },
  ),
  fc.record({ protocol: fc.constantFrom("TCP", "UDP"), port: fc.constantFrom("http", "dns") }),
  fc.record({ port: fc.constantFrom(53, 80), endPort: fc.constantFrom(80, 443) }),
);

const ruleArb = (peersKey: "from" | "to") =>
  fc.record(
    {
      [peersKey]: fc.array(peerArb, { maxLength: 2 }),
      ports: fc.array(portArb, { maxLength: 2 }),
    },
    { requiredKeys: [] },
  );

const policyArb: fc.Arbitrary<NetworkPolicy> = fc
  .record({
    namespace: fc.constantFrom(...NAMESPACES),
    name: fc.constantFrom("p1", "p2", "p3"),
    podSelector: selectorArb,
    policyTypes: fc.constantFrom([], ["Ingress"], ["Egress"], ["Ingress", "Egress"]),
    ingress: fc.array(ruleArb("from"), { maxLength: 2 }),
    egress: fc.array(ruleArb("to"), { maxLength: 2 }),
  })
  .map(({ namespace, name, ...spec }) =>
    networkPolicyFromObject({
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { namespace, name },
      spec,
    }),
  );

const endpointArb: fc.Arbitrary<EnforcedEndpoint> = fc.record({
  namespace: fc.constantFrom(...NAMESPACES),
  name: fc.constantFrom(...NAMES),
  labels: labelsArb,
  ips: fc.uniqueArray(fc.constantFrom(...ENDPOINT_IPS), { minLength: 1, maxLength: 2 }),
  ports: fc.subarray(ENDPOINT_PORTS, { maxLength: 2 }),
  local: fc.boolean(),
});

type Change =
  | { op: "putPolicy"; policy: NetworkPolicy }
  | { op: "deletePolicy"; key: string }
  | { op: "nsLabels"; namespace: string; labels: Record<string, string> }
  | { op: "putEndpoint"; endpoint: EnforcedEndpoint }
  | { op: "deleteEndpoint"; key: string };

const keyArb = fc
  .tuple(fc.constantFrom(...NAMESPACES), fc.constantFrom(...NAMES, "p1", "p2", "p3"))
  .map(([ns, name]) => `${ns}/${name}`);

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("putPolicy" as const), policy: policyArb }), weight: 3 },
  fc.record({ op: fc.constant("deletePolicy" as const), key: keyArb }),
  fc.record({
    op: fc.constant("nsLabels" as const),
    namespace: fc.constantFrom(...NAMESPACES),
    labels: labelsArb,
  }),
  {
    arbitrary: fc.record({ op: fc.constant("putEndpoint" as const), endpoint: endpointArb }),
    weight: 3,
  },
  fc.record({ op: fc.constant("deleteEndpoint" as const), key: keyArb }),
);

const flowArb = fc.record({
  src: fc.constantFrom(...ALL_IPS),
  dst: fc.constantFrom(...ALL_IPS),
  protocol: fc.constantFrom("TCP", "TCP", "UDP", "SCTP", "ICMP"),
  port: fc.constantFrom(...PORTS, 9999),
});

interface World {
  policies: Map<string, NetworkPolicy>;
  nsLabels: Map<string, Record<string, string>>;
  endpoints: Map<string, EnforcedEndpoint>;
}

describe("PolicyEnforcer vs a freshly compiled matcher", () => {
  it("decides every new flow as decide() restricted to local endpoints, after any changes", () => {
    fc.assert(
      fc.property(
        fc.array(changeArb, { minLength: 1, maxLength: 20 }),
        fc.array(flowArb, { minLength: 1, maxLength: 8 }),
        (changes, flows) => {
          const w: World = { policies: new Map(), nsLabels: new Map(), endpoints: new Map() };
          const enforcer = new PolicyEnforcer({ now: () => 0, conntrack: { seed: 1 } });
          const namespaces = () => [...w.nsLabels].map(([n, labels]) => makeNamespace(n, labels));
          let sourcePort = 20_000;
          for (const change of changes) {
            switch (change.op) {
              case "putPolicy":
                w.policies.set(`${change.policy.namespace}/${change.policy.name}`, change.policy);
                enforcer.setPolicies([...w.policies.values()], namespaces());
                break;
              case "deletePolicy":
                w.policies.delete(change.key);
                enforcer.setPolicies([...w.policies.values()], namespaces());
                break;
              case "nsLabels":
                w.nsLabels.set(change.namespace, change.labels);
                enforcer.setPolicies([...w.policies.values()], namespaces());
                break;
              case "putEndpoint": {
                const e = change.endpoint;
                w.endpoints.set(`${e.namespace}/${e.name}`, e);
                enforcer.upsertEndpoint(e);
                break;
              }
              case "deleteEndpoint":
                expect(enforcer.removeEndpoint(change.key)).toBe(w.endpoints.delete(change.key));
                break;
            }

            const fresh = compilePolicies({
              policies: [...w.policies.values()],
              namespaces: namespaces(),
              endpoints: [...w.endpoints.values()],
            });
            const isLocal = (ip: string) =>
              (fresh.endpointForIp(ip) as EnforcedEndpoint | undefined)?.local === true;
            for (const f of flows) {
              const sp = sourcePort++; // every frame starts a new flow
              const frame =
                f.protocol === "TCP"
                  ? tcpFrame(f.src, sp, f.dst, f.port, TCP_SYN)
                  : f.protocol === "UDP"
                    ? udpFrame(f.src, sp, f.dst, f.port)
                    : f.protocol === "SCTP"
                      ? sctpFrame(f.src, sp, f.dst, f.port)
                      : icmpFrame(f.src, f.dst, ICMP_ECHO_REQUEST, sp);
              const port = f.protocol === "ICMP" ? undefined : f.port;
              const d = fresh.decide({
                src: { ip: f.src },
                dst: { ip: f.dst },
                protocol: f.protocol,
                ...(port !== undefined ? { port } : {}),
              });
              const judged = [
                ...(isLocal(f.dst) ? [["ingress", d.ingress] as const] : []),
                ...(isLocal(f.src) ? [["egress", d.egress] as const] : []),
              ];
              const want = judged.every(([, v]) => v.allowed);
              const before = enforcer.lastDenied().length;
              const label = JSON.stringify({ f, d, judged, world: [...w.endpoints.values()] });
              expect(enforcer.checkFrame(frame, 0, frame.length), label).toBe(want);
              const denied = enforcer.lastDenied().slice(before);
              expect(
                denied.map((r) => [r.direction, r.policies, `${r.namespace}/${r.endpoint}`]),
                label,
              ).toEqual(
                judged
                  .filter(([, v]) => !v.allowed)
                  .map(([direction, v]) => {
                    const target = fresh.endpointForIp(direction === "ingress" ? f.dst : f.src);
                    return [direction, v.policies, `${target?.namespace}/${target?.name}`];
                  }),
              );
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
