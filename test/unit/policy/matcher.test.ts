import { describe, expect, it } from "vitest";
import {
  type Endpoint,
  type NetworkPolicy,
  makeNamespace,
  networkPolicyFromObject,
} from "../../../src/policy/model.js";
import { type Verdict, compilePolicies } from "../../../src/policy/matcher.js";

// The world every case runs in. Namespace `other` is deliberately not declared: it still carries
// the automatic kubernetes.io/metadata.name label.
const namespaces = [
  makeNamespace("prod", { env: "prod", team: "a" }),
  makeNamespace("dev", { env: "dev", team: "b" }),
];

function ep(
  key: string,
  ip: string,
  labels: Record<string, string>,
  ports: Endpoint["ports"] = [],
): Endpoint {
  const [namespace, name] = key.split("/") as [string, string];
  return { namespace, name, labels, ips: [ip], ports };
}

const endpoints: Endpoint[] = [
  ep("prod/web", "10.0.1.1", { app: "web", tier: "frontend" }, [
    { name: "http", port: 80, protocol: "TCP" },
    { name: "metrics", port: 9090, protocol: "TCP" },
  ]),
  ep("prod/db", "10.0.1.2", { app: "db", tier: "backend" }, [
    { name: "pg", port: 5432, protocol: "TCP" },
  ]),
  ep("prod/cache", "10.0.1.3", { app: "cache" }, [{ name: "redis", port: 6379, protocol: "TCP" }]),
  ep("dev/web", "10.0.2.1", { app: "web", tier: "frontend" }, [
    { name: "http", port: 8080, protocol: "TCP" },
  ]),
  ep("dev/tool", "10.0.2.2", { app: "tool" }, [{ name: "dns", port: 53, protocol: "UDP" }]),
  ep("other/x", "10.0.3.1", { app: "x" }),
];
const ipOf = new Map(endpoints.map((e) => [`${e.namespace}/${e.name}`, e.ips[0] as string]));

/** A NetworkPolicy as it would come out of YAML, converted by the model. */
function np(key: string, spec: Record<string, unknown>): NetworkPolicy {
  const [namespace, name] = key.split("/") as [string, string];
  return networkPolicyFromObject({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name },
    spec,
  });
}

const app = (value: string) => ({ matchLabels: { app: value } });

/** src, dst (endpoint key or IP), protocol, port, expected ingress, expected egress. */
type Row = [string, string, string, number | undefined, string, string];

function show(v: Verdict): string {
  switch (v.reason) {
    case "not-evaluated":
      return "n/a";
    case "unselected":
      return "open";
    case "allowed":
      return `allow:${v.policies.join(",")}`;
    case "denied":
      return `deny:${v.policies.join(",")}`;
  }
}

const cases: { name: string; policies: NetworkPolicy[]; rows: Row[] }[] = [
  {
    name: "no policies: everything open",
    policies: [],
    rows: [
      ["prod/web", "prod/db", "TCP", 5432, "open", "open"],
      ["8.8.8.8", "prod/db", "TCP", 5432, "open", "n/a"],
      ["prod/db", "8.8.8.8", "UDP", 53, "n/a", "open"],
      ["8.8.8.8", "1.1.1.1", "TCP", 80, "n/a", "n/a"],
    ],
  },
  {
    name: "default deny ingress (podSelector {} without ingress rules)",
    policies: [np("prod/deny", { podSelector: {} })],
    rows: [
      ["dev/web", "prod/db", "TCP", 5432, "deny:prod/deny", "open"],
      ["prod/web", "prod/db", "TCP", 5432, "deny:prod/deny", "open"],
      ["prod/web", "dev/web", "TCP", 8080, "open", "open"],
      ["8.8.8.8", "prod/web", "ICMP", undefined, "deny:prod/deny", "n/a"],
      ["prod/web", "8.8.8.8", "TCP", 443, "n/a", "open"],
    ],
  },
  {
    name: "default deny egress",
    policies: [np("prod/deny-egress", { podSelector: {}, policyTypes: ["Egress"] })],
    rows: [
      ["prod/web", "dev/web", "TCP", 8080, "open", "deny:prod/deny-egress"],
      ["prod/web", "8.8.8.8", "UDP", 53, "n/a", "deny:prod/deny-egress"],
      ["dev/web", "prod/web", "TCP", 80, "open", "open"],
    ],
  },
  {
    name: "allow-all ingress unioned with default deny",
    policies: [
      np("prod/deny", { podSelector: {} }),
      np("prod/allow-all", { podSelector: {}, ingress: [{}] }),
    ],
    rows: [
      ["dev/tool", "prod/db", "UDP", 53, "allow:prod/allow-all", "open"],
      ["8.8.8.8", "prod/web", "ICMP", undefined, "allow:prod/allow-all", "n/a"],
    ],
  },
  {
    name: "allow-all egress",
    policies: [np("prod/all-out", { podSelector: {}, policyTypes: ["Egress"], egress: [{}] })],
    rows: [["prod/web", "8.8.8.8", "SCTP", 9, "n/a", "allow:prod/all-out"]],
  },
  {
    name: "podSelector peer: pods of the policy's own namespace only",
    policies: [
      np("prod/db-from-frontend", {
        podSelector: app("db"),
        ingress: [{ from: [{ podSelector: { matchLabels: { tier: "frontend" } } }] }],
      }),
    ],
    rows: [
      ["prod/web", "prod/db", "TCP", 5432, "allow:prod/db-from-frontend", "open"],
      ["dev/web", "prod/db", "TCP", 5432, "deny:prod/db-from-frontend", "open"],
      ["prod/cache", "prod/db", "TCP", 5432, "deny:prod/db-from-frontend", "open"],
      ["8.8.8.8", "prod/db", "TCP", 5432, "deny:prod/db-from-frontend", "n/a"],
      ["prod/web", "prod/cache", "TCP", 6379, "open", "open"],
    ],
  },
  {
    name: "matchExpressions In / NotIn (NotIn matches a missing key)",
    policies: [
      np("prod/in-notin", {
        podSelector: {
          matchExpressions: [{ key: "app", operator: "In", values: ["web", "cache"] }],
        },
        ingress: [
          {
            from: [
              {
                podSelector: {
                  matchExpressions: [{ key: "tier", operator: "NotIn", values: ["backend"] }],
                },
              },
            ],
          },
        ],
      }),
    ],
    rows: [
      ["prod/db", "prod/web", "TCP", 80, "deny:prod/in-notin", "open"],
      ["prod/cache", "prod/web", "TCP", 80, "allow:prod/in-notin", "open"],
      ["prod/web", "prod/cache", "TCP", 6379, "allow:prod/in-notin", "open"],
      ["prod/web", "prod/db", "TCP", 5432, "open", "open"],
    ],
  },
  {
    name: "matchExpressions Exists / DoesNotExist",
    policies: [
      np("prod/exists", {
        podSelector: { matchExpressions: [{ key: "tier", operator: "Exists" }] },
        ingress: [
          {
            from: [
              { podSelector: { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] } },
            ],
          },
        ],
      }),
    ],
    rows: [
      ["prod/cache", "prod/web", "TCP", 80, "allow:prod/exists", "open"],
      ["prod/db", "prod/web", "TCP", 80, "deny:prod/exists", "open"],
      ["prod/cache", "prod/db", "TCP", 5432, "allow:prod/exists", "open"],
      ["prod/web", "prod/cache", "TCP", 6379, "open", "open"],
    ],
  },
  {
    name: "namespaceSelector alone: every pod of the matching namespaces",
    policies: [
      np("prod/from-dev", {
        podSelector: app("db"),
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: "dev" } } }] }],
      }),
    ],
    rows: [
      ["dev/web", "prod/db", "TCP", 5432, "allow:prod/from-dev", "open"],
      ["dev/tool", "prod/db", "TCP", 5432, "allow:prod/from-dev", "open"],
      ["other/x", "prod/db", "TCP", 5432, "deny:prod/from-dev", "open"],
      ["prod/web", "prod/db", "TCP", 5432, "deny:prod/from-dev", "open"],
    ],
  },
  {
    name: "namespaceSelector {} (all namespaces) and the automatic name label",
    policies: [
      np("prod/any-pod", {
        podSelector: app("web"),
        ingress: [{ from: [{ namespaceSelector: {} }] }],
      }),
      np("prod/from-other", {
        podSelector: app("db"),
        ingress: [
          {
            from: [
              { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "other" } } },
            ],
          },
        ],
      }),
    ],
    rows: [
      ["other/x", "prod/web", "TCP", 80, "allow:prod/any-pod", "open"],
      ["prod/db", "prod/web", "TCP", 80, "allow:prod/any-pod", "open"],
      ["8.8.8.8", "prod/web", "TCP", 80, "deny:prod/any-pod", "n/a"],
      ["other/x", "prod/db", "TCP", 5432, "allow:prod/from-other", "open"],
      ["dev/web", "prod/db", "TCP", 5432, "deny:prod/from-other", "open"],
    ],
  },
  {
    name: "pod and namespace selector in one peer: AND",
    policies: [
      np("prod/and", {
        podSelector: app("db"),
        ingress: [
          {
            from: [{ namespaceSelector: { matchLabels: { env: "dev" } }, podSelector: app("web") }],
          },
        ],
      }),
    ],
    rows: [
      ["dev/web", "prod/db", "TCP", 5432, "allow:prod/and", "open"],
      ["dev/tool", "prod/db", "TCP", 5432, "deny:prod/and", "open"],
      ["prod/web", "prod/db", "TCP", 5432, "deny:prod/and", "open"],
    ],
  },
  {
    name: "pod and namespace selectors as separate peers: OR",
    policies: [
      np("prod/or", {
        podSelector: app("db"),
        ingress: [
          {
            from: [
              { namespaceSelector: { matchLabels: { env: "dev" } } },
              { podSelector: app("web") },
            ],
          },
        ],
      }),
    ],
    rows: [
      ["dev/web", "prod/db", "TCP", 5432, "allow:prod/or", "open"],
      ["dev/tool", "prod/db", "TCP", 5432, "allow:prod/or", "open"],
      ["prod/web", "prod/db", "TCP", 5432, "allow:prod/or", "open"],
      ["prod/cache", "prod/db", "TCP", 5432, "deny:prod/or", "open"],
      ["other/x", "prod/db", "TCP", 5432, "deny:prod/or", "open"],
    ],
  },
  {
    name: "ipBlock with except; pod IPs match by IP",
    policies: [
      np("prod/lan", {
        podSelector: app("web"),
        ingress: [
          { from: [{ ipBlock: { cidr: "192.168.1.0/24", except: ["192.168.1.128/25"] } }] },
          { from: [{ ipBlock: { cidr: "10.0.2.7/24" } }] }, // host bits set: the /24 counts
        ],
      }),
    ],
    rows: [
      ["192.168.1.10", "prod/web", "TCP", 80, "allow:prod/lan", "n/a"],
      ["192.168.1.127", "prod/web", "TCP", 80, "allow:prod/lan", "n/a"],
      ["192.168.1.128", "prod/web", "TCP", 80, "deny:prod/lan", "n/a"],
      ["192.168.1.200", "prod/web", "TCP", 80, "deny:prod/lan", "n/a"],
      ["8.8.8.8", "prod/web", "TCP", 80, "deny:prod/lan", "n/a"],
      ["dev/web", "prod/web", "TCP", 80, "allow:prod/lan", "open"],
      ["dev/tool", "prod/web", "TCP", 80, "allow:prod/lan", "open"],
      ["prod/cache", "prod/web", "TCP", 80, "deny:prod/lan", "open"],
    ],
  },
  {
    name: "egress ipBlock: the internet but not the cluster",
    policies: [
      np("prod/internet", {
        podSelector: app("web"),
        policyTypes: ["Egress"],
        egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["10.0.0.0/8"] } }] }],
      }),
    ],
    rows: [
      ["prod/web", "8.8.8.8", "UDP", 53, "n/a", "allow:prod/internet"],
      ["prod/web", "prod/db", "TCP", 5432, "open", "deny:prod/internet"],
      ["prod/web", "10.9.9.9", "TCP", 22, "n/a", "deny:prod/internet"],
      ["prod/db", "8.8.8.8", "UDP", 53, "n/a", "open"],
    ],
  },
  {
    name: "numeric ports: protocol default TCP, explicit UDP / SCTP, port-only-protocol",
    policies: [
      np("prod/pg", { podSelector: app("db"), ingress: [{ ports: [{ port: 5432 }] }] }),
      np("prod/udp", { podSelector: app("cache"), ingress: [{ ports: [{ protocol: "UDP" }] }] }),
      np("prod/sctp", {
        podSelector: app("web"),
        ingress: [{ ports: [{ protocol: "SCTP", port: 3868 }] }],
      }),
    ],
    rows: [
      ["prod/web", "prod/db", "TCP", 5432, "allow:prod/pg", "open"],
      ["prod/web", "prod/db", "UDP", 5432, "deny:prod/pg", "open"],
      ["prod/web", "prod/db", "TCP", 5433, "deny:prod/pg", "open"],
      ["prod/web", "prod/db", "ICMP", undefined, "deny:prod/pg", "open"],
      ["prod/web", "prod/cache", "UDP", 1, "allow:prod/udp", "open"],
      ["prod/web", "prod/cache", "UDP", 65535, "allow:prod/udp", "open"],
      ["prod/web", "prod/cache", "TCP", 6379, "deny:prod/udp", "open"],
      ["prod/db", "prod/web", "SCTP", 3868, "allow:prod/sctp", "open"],
      ["prod/db", "prod/web", "TCP", 3868, "deny:prod/sctp", "open"],
    ],
  },
  {
    name: "endPort ranges are inclusive",
    policies: [
      np("prod/range", {
        podSelector: app("web"),
        ingress: [{ ports: [{ port: 8000, endPort: 8080 }] }],
      }),
    ],
    rows: [
      ["8.8.8.8", "prod/web", "TCP", 7999, "deny:prod/range", "n/a"],
      ["8.8.8.8", "prod/web", "TCP", 8000, "allow:prod/range", "n/a"],
      ["8.8.8.8", "prod/web", "TCP", 8050, "allow:prod/range", "n/a"],
      ["8.8.8.8", "prod/web", "TCP", 8080, "allow:prod/range", "n/a"],
      ["8.8.8.8", "prod/web", "TCP", 8081, "deny:prod/range", "n/a"],
      ["8.8.8.8", "prod/web", "UDP", 8050, "deny:prod/range", "n/a"],
    ],
  },
  {
    name: "named ports resolve per destination endpoint",
    policies: [
      np("prod/http-in", { podSelector: {}, ingress: [{ ports: [{ port: "http" }] }] }),
      np("prod/http-out", {
        podSelector: app("web"),
        policyTypes: ["Egress"],
        egress: [{ ports: [{ port: "http" }, { port: "dns", protocol: "UDP" }] }],
      }),
      np("prod/dns-tcp-out", {
        podSelector: app("cache"),
        policyTypes: ["Egress"],
        egress: [{ ports: [{ port: "dns" }] }],
      }),
    ],
    rows: [
      // prod/web declares http = 80
      ["8.8.8.8", "prod/web", "TCP", 80, "allow:prod/http-in", "n/a"],
      ["8.8.8.8", "prod/web", "TCP", 8080, "deny:prod/http-in", "n/a"],
      // prod/db has no port named http: nothing matches
      ["8.8.8.8", "prod/db", "TCP", 80, "deny:prod/http-in", "n/a"],
      // egress: resolved against the destination, dev/web declares http = 8080
      ["prod/web", "dev/web", "TCP", 8080, "open", "allow:prod/http-out"],
      ["prod/web", "dev/web", "TCP", 80, "open", "deny:prod/http-out"],
      ["prod/web", "8.8.8.8", "TCP", 80, "n/a", "deny:prod/http-out"],
      ["prod/web", "dev/tool", "UDP", 53, "open", "allow:prod/http-out"],
      // dns is UDP on dev/tool; the rule's protocol defaults to TCP
      ["prod/cache", "dev/tool", "TCP", 53, "open", "deny:prod/dns-tcp-out"],
      ["prod/cache", "dev/tool", "UDP", 53, "open", "deny:prod/dns-tcp-out"],
    ],
  },
  {
    name: "policyTypes: explicit Ingress ignores egress rules",
    policies: [
      np("prod/ingress-only", {
        podSelector: app("web"),
        policyTypes: ["Ingress"],
        ingress: [{}],
        egress: [{ to: [{ ipBlock: { cidr: "1.2.3.4/32" } }] }],
      }),
    ],
    rows: [
      ["prod/web", "8.8.8.8", "TCP", 80, "n/a", "open"],
      ["prod/db", "prod/web", "TCP", 80, "allow:prod/ingress-only", "open"],
    ],
  },
  {
    name: "policyTypes absent: egress rules imply Egress, Ingress is always there",
    policies: [
      np("prod/implied", {
        podSelector: app("web"),
        egress: [{ to: [{ ipBlock: { cidr: "1.2.3.4/32" } }] }],
      }),
      np("prod/empty-egress", { podSelector: app("cache"), ingress: [{}], egress: [] }),
    ],
    rows: [
      ["prod/web", "1.2.3.4", "TCP", 80, "n/a", "allow:prod/implied"],
      ["prod/web", "8.8.8.8", "TCP", 80, "n/a", "deny:prod/implied"],
      ["prod/db", "prod/web", "TCP", 80, "deny:prod/implied", "open"],
      ["prod/cache", "8.8.8.8", "TCP", 80, "n/a", "open"],
    ],
  },
  {
    name: "policyTypes both, no rules: isolated both ways",
    policies: [np("prod/isolate", { podSelector: app("db"), policyTypes: ["Ingress", "Egress"] })],
    rows: [
      ["prod/web", "prod/db", "TCP", 5432, "deny:prod/isolate", "open"],
      ["prod/db", "prod/web", "TCP", 80, "open", "deny:prod/isolate"],
    ],
  },
  {
    name: "several policies: union; verdicts name who allowed or who denied",
    policies: [
      np("prod/p1", {
        podSelector: app("db"),
        ingress: [{ from: [{ podSelector: app("web") }], ports: [{ port: 5432 }] }],
      }),
      np("prod/p2", {
        podSelector: app("db"),
        ingress: [
          {
            from: [{ namespaceSelector: { matchLabels: { env: "dev" } } }],
            ports: [{ port: 5432 }],
          },
        ],
      }),
      np("prod/p3", {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: {} }], ports: [{ port: "pg" }] }],
      }),
    ],
    rows: [
      ["prod/web", "prod/db", "TCP", 5432, "allow:prod/p1,prod/p3", "open"],
      ["dev/tool", "prod/db", "TCP", 5432, "allow:prod/p2,prod/p3", "open"],
      ["other/x", "prod/db", "TCP", 5432, "allow:prod/p3", "open"],
      ["prod/cache", "prod/db", "TCP", 22, "deny:prod/p1,prod/p2,prod/p3", "open"],
      ["prod/db", "prod/web", "TCP", 5432, "deny:prod/p3", "open"],
    ],
  },
  {
    name: "policies of another namespace do not apply",
    policies: [
      np("dev/deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
      np("dev/web-only", { podSelector: app("web"), ingress: [] }),
    ],
    rows: [
      ["prod/web", "prod/db", "TCP", 5432, "open", "open"],
      ["prod/db", "prod/web", "TCP", 80, "open", "open"],
      ["prod/web", "dev/web", "TCP", 8080, "deny:dev/deny-all,dev/web-only", "open"],
      ["dev/tool", "prod/web", "TCP", 80, "open", "deny:dev/deny-all"],
    ],
  },
];

describe("matcher: policies × flows", () => {
  for (const c of cases) {
    it(c.name, () => {
      const matcher = compilePolicies({ policies: c.policies, namespaces, endpoints });
      for (const [src, dst, protocol, port, ingress, egress] of c.rows) {
        const flow = {
          src: { ip: ipOf.get(src) ?? src },
          dst: { ip: ipOf.get(dst) ?? dst },
          protocol,
          ...(port !== undefined ? { port } : {}),
        };
        const d = matcher.decide(flow);
        const label = `${src} -> ${dst} ${protocol}/${port ?? "-"}`;
        expect([show(d.ingress), show(d.egress)], label).toEqual([ingress, egress]);
        expect(d.allowed, label).toBe(d.ingress.allowed && d.egress.allowed);
        expect(d.ingress.allowed, label).toBe(!ingress.startsWith("deny"));
        // Same answer on a second call (selection is remembered per endpoint).
        expect(matcher.decide(flow), label).toEqual(d);
      }
    });
  }
});

describe("matcher", () => {
  const policies = [
    np("prod/db", { podSelector: app("db"), ingress: [{ from: [{ podSelector: app("web") }] }] }),
  ];

  it("looks endpoints up by IP, or uses the endpoint given with the flow", () => {
    const m = compilePolicies({ policies, namespaces, endpoints });
    expect(m.endpointForIp("10.0.1.2")?.name).toBe("db");
    expect(m.endpointForIp("10.0.9.9")).toBeUndefined();
    expect(m.endpointForIp("not an ip")).toBeUndefined();
    // A local endpoint the matcher was not told about: given with the flow.
    const newcomer: Endpoint = {
      namespace: "prod",
      name: "new",
      labels: { app: "web" },
      ips: ["10.0.1.99"],
      ports: [],
    };
    const d = m.decide({
      src: { ip: "10.0.1.99", endpoint: newcomer },
      dst: { ip: "10.0.1.2" },
      protocol: "TCP",
      port: 5432,
    });
    expect(d.ingress).toEqual({ allowed: true, reason: "allowed", policies: ["prod/db"] });
    expect(
      m.decide({ src: { ip: "10.0.1.99" }, dst: { ip: "10.0.1.2" }, protocol: "TCP", port: 1 })
        .ingress.allowed,
    ).toBe(false);
  });

  it("reports which policies select an endpoint", () => {
    const m = compilePolicies({
      policies: [
        ...policies,
        np("prod/all", { podSelector: {}, policyTypes: ["Egress"] }),
        np("dev/all", { podSelector: {} }),
      ],
      namespaces,
      endpoints,
    });
    const db = endpoints[1] as Endpoint;
    expect(m.selectingPolicies(db, "ingress")).toEqual(["prod/db"]);
    expect(m.selectingPolicies(db, "egress")).toEqual(["prod/all"]);
    expect(m.selectingPolicies(endpoints[0] as Endpoint, "ingress")).toEqual([]);
  });

  it("lets a later policy or endpoint with the same identity replace an earlier one", () => {
    const m = compilePolicies({
      policies: [...policies, np("prod/db", { podSelector: app("db"), ingress: [{}] })],
      namespaces,
      endpoints: [...endpoints, ep("prod/db", "10.0.1.50", { app: "db" })],
    });
    expect(m.endpointForIp("10.0.1.2")).toBeUndefined();
    const d = m.decide({
      src: { ip: "8.8.8.8" },
      dst: { ip: "10.0.1.50" },
      protocol: "TCP",
      port: 1,
    });
    expect(d.ingress.reason).toBe("allowed");
  });

  it("compiles thousands of policies and endpoints quickly", () => {
    const many: NetworkPolicy[] = [];
    const eps: Endpoint[] = [];
    for (let n = 0; n < 100; n++) {
      for (let i = 0; i < 50; i++) {
        many.push(
          np(`ns${n}/p${i}`, {
            podSelector: app(`a${i}`),
            ingress: [{ from: [{ podSelector: app(`a${(i + 1) % 50}`) }], ports: [{ port: 80 }] }],
          }),
        );
        eps.push(ep(`ns${n}/e${i}`, `10.${n}.${i}.1`, { app: `a${i}` }));
      }
    }
    const start = performance.now();
    const m = compilePolicies({ policies: many, endpoints: eps });
    let allowed = 0;
    for (let n = 0; n < 100; n++) {
      for (let i = 0; i < 50; i++) {
        const src = `10.${n}.${(i + 1) % 50}.1`;
        if (
          m.decide({ src: { ip: src }, dst: { ip: `10.${n}.${i}.1` }, protocol: "TCP", port: 80 })
            .allowed
        ) {
          allowed++;
        }
      }
    }
    expect(allowed).toBe(5000);
    expect(performance.now() - start).toBeLessThan(2000);
  });
});
