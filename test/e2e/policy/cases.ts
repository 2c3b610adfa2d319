// The policies of the matrix test, each with the reachability it should produce, written out
// per policy as Kubernetes' network-policy tests do ("everything allowed except into x/a").
//
// The world: namespaces x, y and z, labelled ns=<name>, x and y also tier=front / tier=back (for
// Exists / DoesNotExist); pods a, b and c in each, labelled pod=<name>, each declaring the named
// ports serve-80-tcp, serve-81-tcp, serve-80-udp and serve-81-udp.
import { Reachability, type PodId, type PolicyNamespace, type Probe } from "./reachability.js";

export type Manifest = Record<string, unknown>;
export type NamespaceLabels = Record<PolicyNamespace, Record<string, string>>;

export const NAMESPACE_LABELS: NamespaceLabels = {
  x: { ns: "x", tier: "front" },
  y: { ns: "y", tier: "back" },
  z: { ns: "z" },
};

/** What a case may need to know about the world it runs in (addresses differ per datapath). */
export interface CaseContext {
  ip(pod: PodId): string;
  /** The subnet holding every pod's address, as a CIDR. */
  subnet: string;
}

export interface PolicyCase {
  readonly name: string;
  readonly policies: (ctx: CaseContext) => Manifest[];
  readonly expect: (probe: Probe) => Reachability;
}

export function netpol(namespace: string, name: string, spec: Record<string, unknown>): Manifest {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name },
    spec,
  };
}

export function namespaceManifest(name: string, labels: Record<string, string>): Manifest {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name, labels } };
}

const pod = (name: string): Record<string, unknown> => ({ matchLabels: { pod: name } });
const ns = (name: string): Record<string, unknown> => ({ matchLabels: { ns: name } });
const all = (): Reachability => new Reachability(true);
const sameForAll =
  (r: () => Reachability) =>
  (_probe: Probe): Reachability =>
    r();
const isTcp = (p: Probe, port: number): boolean => p.protocol === "tcp" && p.port === port;
const isUdp = (p: Probe, port: number): boolean => p.protocol === "udp" && p.port === port;

export const denyIngressX = netpol("x", "deny-ingress", {
  podSelector: {},
  policyTypes: ["Ingress"],
});

/** x/a accepts only from x/b: also the policy of the label-change steps. */
export const xaFromPodB = netpol("x", "a-from-b", {
  podSelector: pod("a"),
  ingress: [{ from: [{ podSelector: pod("b") }] }],
});

/** x/a accepts pod=b from every namespace (the label-change test moves pods in and out). */
export const xaFromAnyPodB = netpol("x", "a-from-any-b", {
  podSelector: pod("a"),
  ingress: [{ from: [{ namespaceSelector: {}, podSelector: pod("b") }] }],
});

/** Everything in x accepts only namespaces labelled team=blue (none at first). */
export const xFromTeamBlue = netpol("x", "from-team-blue", {
  podSelector: {},
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "blue" } } }] }],
});

export const CASES: readonly PolicyCase[] = [
  {
    name: "no policy: everything reaches everything",
    policies: () => [],
    expect: sameForAll(all),
  },
  {
    name: "default deny ingress in x",
    policies: () => [denyIngressX],
    expect: sameForAll(() => all().into("x/*", false)),
  },
  {
    name: "default deny egress in x (no DNS needed)",
    policies: () => [netpol("x", "deny-egress", { podSelector: {}, policyTypes: ["Egress"] })],
    expect: sameForAll(() => all().from("x/*", false)),
  },
  {
    name: "default deny ingress and egress in y",
    policies: () => [
      netpol("y", "deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
    ],
    expect: sameForAll(() => all().into("y/*", false).from("y/*", false)),
  },
  {
    name: "allow-all ingress for pod=c beside a default deny in x",
    policies: () => [
      denyIngressX,
      netpol("x", "allow-c", { podSelector: pod("c"), ingress: [{}] }),
    ],
    expect: sameForAll(() => all().into("x/a", false).into("x/b", false)),
  },
  {
    name: "pod selector: x/a accepts only x/b",
    policies: () => [xaFromPodB],
    expect: sameForAll(() => all().into("x/a", false).set("x/b", "x/a", true)),
  },
  {
    name: "namespace selector: x/a accepts only namespace y",
    policies: () => [
      netpol("x", "a-from-y", {
        podSelector: pod("a"),
        ingress: [{ from: [{ namespaceSelector: ns("y") }] }],
      }),
    ],
    expect: sameForAll(() => all().into("x/a", false).set("y/*", "x/a", true)),
  },
  {
    // The label Kubernetes puts on every namespace: the manifests do not write it.
    name: "namespace selector on kubernetes.io/metadata.name: x/a accepts only namespace z",
    policies: () => [
      netpol("x", "a-from-z-by-name", {
        podSelector: pod("a"),
        ingress: [
          {
            from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "z" } } }],
          },
        ],
      }),
    ],
    expect: sameForAll(() => all().into("x/a", false).set("z/*", "x/a", true)),
  },
  {
    name: "namespace AND pod selector in one peer: x/a accepts only y/c",
    policies: () => [
      netpol("x", "a-from-y-and-c", {
        podSelector: pod("a"),
        ingress: [{ from: [{ namespaceSelector: ns("y"), podSelector: pod("c") }] }],
      }),
    ],
    expect: sameForAll(() => all().into("x/a", false).set("y/c", "x/a", true)),
  },
  {
    name: "namespace OR pod selector as two peers: x/a accepts namespace y and x/c",
    policies: () => [
      netpol("x", "a-from-y-or-c", {
        podSelector: pod("a"),
        ingress: [{ from: [{ namespaceSelector: ns("y") }, { podSelector: pod("c") }] }],
      }),
    ],
    expect: sameForAll(() =>
      all().into("x/a", false).set("y/*", "x/a", true).set("x/c", "x/a", true),
    ),
  },
  {
    name: "every namespace AND pod=b: x/a accepts */b",
    policies: () => [xaFromAnyPodB],
    expect: sameForAll(() => all().into("x/a", false).set("*/b", "x/a", true)),
  },
  {
    name: "matchExpressions In: y/a and y/b accept only namespace x",
    policies: () => [
      netpol("y", "ab-from-x", {
        podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["a", "b"] }] },
        ingress: [
          {
            from: [
              {
                namespaceSelector: {
                  matchExpressions: [{ key: "ns", operator: "In", values: ["x"] }],
                },
              },
            ],
          },
        ],
      }),
    ],
    expect: sameForAll(() =>
      all().into("y/a", false).into("y/b", false).set("x/*", "y/a", true).set("x/*", "y/b", true),
    ),
  },
  {
    name: "matchExpressions NotIn: x/a accepts every pod but a and b",
    policies: () => [
      netpol("x", "a-not-from-ab", {
        podSelector: pod("a"),
        ingress: [
          {
            from: [
              {
                namespaceSelector: {},
                podSelector: {
                  matchExpressions: [{ key: "pod", operator: "NotIn", values: ["a", "b"] }],
                },
              },
            ],
          },
        ],
      }),
    ],
    expect: sameForAll(() => all().into("x/a", false).set("*/c", "x/a", true)),
  },
  {
    name: "matchExpressions Exists: y accepts namespaces that have a tier (x, y)",
    policies: () => [
      netpol("y", "from-tiered", {
        podSelector: {},
        ingress: [
          {
            from: [
              { namespaceSelector: { matchExpressions: [{ key: "tier", operator: "Exists" }] } },
            ],
          },
        ],
      }),
    ],
    expect: sameForAll(() => all().set("z/*", "y/*", false)),
  },
  {
    name: "matchExpressions DoesNotExist: y accepts only namespaces without a tier (z)",
    policies: () => [
      netpol("y", "from-untiered", {
        podSelector: {},
        ingress: [
          {
            from: [
              {
                namespaceSelector: {
                  matchExpressions: [{ key: "tier", operator: "DoesNotExist" }],
                },
              },
            ],
          },
        ],
      }),
    ],
    expect: sameForAll(() => all().into("y/*", false).set("z/*", "y/*", true)),
  },
  {
    name: "ports: x/a accepts TCP 80 only (protocol defaults to TCP)",
    policies: () => [
      netpol("x", "a-tcp-80", { podSelector: pod("a"), ingress: [{ ports: [{ port: 80 }] }] }),
    ],
    expect: (p) => (isTcp(p, 80) ? all() : all().into("x/a", false)),
  },
  {
    name: "ports: x/a accepts UDP 81 only",
    policies: () => [
      netpol("x", "a-udp-81", {
        podSelector: pod("a"),
        ingress: [{ ports: [{ protocol: "UDP", port: 81 }] }],
      }),
    ],
    expect: (p) => (isUdp(p, 81) ? all() : all().into("x/a", false)),
  },
  {
    name: "endPort: x accepts TCP 81-90 only",
    policies: () => [
      netpol("x", "tcp-81-90", {
        podSelector: {},
        ingress: [{ ports: [{ protocol: "TCP", port: 81, endPort: 90 }] }],
      }),
    ],
    expect: (p) => (isTcp(p, 81) ? all() : all().into("x/*", false)),
  },
  {
    name: "named ports: x/a accepts serve-81-tcp and UDP serve-80-udp from y only",
    policies: () => [
      netpol("x", "a-named", {
        podSelector: pod("a"),
        ingress: [
          {
            from: [{ namespaceSelector: ns("y") }],
            ports: [{ port: "serve-81-tcp" }, { protocol: "UDP", port: "serve-80-udp" }],
          },
        ],
      }),
    ],
    expect: (p) => {
      const r = all().into("x/a", false);
      return isTcp(p, 81) || isUdp(p, 80) ? r.set("y/*", "x/a", true) : r;
    },
  },
  {
    name: "ipBlock with except: x/a accepts the subnet but y/b and z/c",
    policies: (ctx) => [
      netpol("x", "a-from-block", {
        podSelector: pod("a"),
        ingress: [
          {
            from: [
              {
                ipBlock: {
                  cidr: ctx.subnet,
                  except: [`${ctx.ip("y/b")}/32`, `${ctx.ip("z/c")}/32`],
                },
              },
            ],
          },
        ],
      }),
    ],
    expect: sameForAll(() => all().set("y/b", "x/a", false).set("z/c", "x/a", false)),
  },
  {
    name: "egress: x/a reaches namespace y only",
    policies: () => [
      netpol("x", "a-to-y", {
        podSelector: pod("a"),
        policyTypes: ["Egress"],
        egress: [{ to: [{ namespaceSelector: ns("y") }] }],
      }),
    ],
    expect: sameForAll(() => all().from("x/a", false).set("x/a", "y/*", true)),
  },
  {
    name: "egress with ports: x reaches pod=b on TCP 81 only",
    policies: () => [
      netpol("x", "to-b-81", {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [
          {
            to: [{ namespaceSelector: {}, podSelector: pod("b") }],
            ports: [{ protocol: "TCP", port: 81 }],
          },
        ],
      }),
    ],
    expect: (p) => {
      const r = all().from("x/*", false);
      return isTcp(p, 81) ? r.set("x/*", "*/b", true) : r;
    },
  },
  {
    name: "egress ipBlock: x/a reaches z/c's address only",
    policies: (ctx) => [
      netpol("x", "a-to-zc", {
        podSelector: pod("a"),
        policyTypes: ["Egress"],
        egress: [{ to: [{ ipBlock: { cidr: `${ctx.ip("z/c")}/32` } }] }],
      }),
    ],
    expect: sameForAll(() => all().from("x/a", false).set("x/a", "z/c", true)),
  },
  {
    name: "egress named port: z reaches its own namespace on serve-80-tcp only",
    policies: () => [
      netpol("z", "to-z-http", {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [{ to: [{ podSelector: {} }], ports: [{ port: "serve-80-tcp" }] }],
      }),
    ],
    expect: (p) => {
      const r = all().from("z/*", false);
      return isTcp(p, 80) ? r.set("z/*", "z/*", true) : r;
    },
  },
  {
    name: "union of two ingress policies: x/a accepts x/b, and namespace z",
    policies: () => [
      xaFromPodB,
      netpol("x", "a-from-z", {
        podSelector: pod("a"),
        ingress: [{ from: [{ namespaceSelector: ns("z") }] }],
      }),
    ],
    expect: sameForAll(() =>
      all().into("x/a", false).set("x/b", "x/a", true).set("z/*", "x/a", true),
    ),
  },
  {
    name: "union across namespaces: y denies ingress, z denies egress",
    policies: () => [
      netpol("y", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }),
      netpol("z", "deny-egress", { podSelector: {}, policyTypes: ["Egress"] }),
    ],
    expect: sameForAll(() => all().into("y/*", false).from("z/*", false)),
  },
  {
    name: "one policy, both types: z/a accepts everything and sends nothing",
    policies: () => [
      netpol("z", "a-inbound-only", {
        podSelector: pod("a"),
        policyTypes: ["Ingress", "Egress"],
        ingress: [{}],
      }),
    ],
    expect: sameForAll(() => all().from("z/a", false)),
  },
  {
    name: "ingress and egress together: x/b reaches y/b on TCP, y/b accepts only x/b",
    policies: () => [
      netpol("x", "b-to-y-b-tcp", {
        podSelector: pod("b"),
        policyTypes: ["Egress"],
        egress: [
          {
            to: [{ namespaceSelector: ns("y"), podSelector: pod("b") }],
            ports: [
              { protocol: "TCP", port: 80 },
              { protocol: "TCP", port: 81 },
            ],
          },
        ],
      }),
      netpol("y", "b-from-x-b", {
        podSelector: pod("b"),
        ingress: [{ from: [{ namespaceSelector: ns("x"), podSelector: pod("b") }] }],
      }),
    ],
    expect: (p) => {
      const r = all().from("x/b", false).into("y/b", false);
      return p.protocol === "tcp" ? r.set("x/b", "y/b", true) : r;
    },
  },
];

/** The ids of the case policies, as `weft status policy` names them (`namespace/name`). */
export function policyNames(manifests: readonly Manifest[]): string[] {
  return manifests
    .filter((m) => m.kind === "NetworkPolicy")
    .map((m) => {
      const meta = m.metadata as { namespace: string; name: string };
      return `${meta.namespace}/${meta.name}`;
    });
}
