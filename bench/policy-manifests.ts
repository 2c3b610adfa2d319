// The policy set of the network policy benchmark: 100 NetworkPolicies and 11 Namespaces, as a
// cluster of a few teams might hold them, written as kubectl-style YAML (several documents per
// file, one file per namespace) for `weft launch --policy-dir`.
//
// The tested endpoints are two pods of namespace `shop`: the client `storefront` (egress judged
// on its host) and the server `catalog` (ingress judged on its host). `shop` runs default-deny in
// both directions, so every flow between them must be allowed by a rule: the storefront's egress
// by a port range towards the backends, the catalog's ingress by a pod selector with a numeric and
// a named port, and by an ipBlock. Other policies of `shop` select other pods or both tested pods
// without allowing anything more; the other 10 namespaces hold varied policies (pod and namespace
// selectors with matchLabels and matchExpressions, ipBlocks with exceptions, port ranges, named
// ports, UDP and SCTP) that select none of the tested pods but that the matcher must get past.
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

/** The part of js-yaml (4.x) used here; the package ships no type declarations. */
interface JsYamlDump {
  dump(value: unknown, options?: { lineWidth?: number; noRefs?: boolean }): string;
}
const jsYaml = createRequire(import.meta.url)("js-yaml") as JsYamlDump;

export const POLICY_NAMESPACE = "shop";

/** Labels of the client endpoint (`weft label … KEY=VALUE`). */
export const CLIENT_LABELS: Readonly<Record<string, string>> = {
  app: "storefront",
  tier: "frontend",
  version: "v2",
  track: "stable",
};
/** Labels of the server endpoint. */
export const SERVER_LABELS: Readonly<Record<string, string>> = {
  app: "catalog",
  tier: "backend",
  version: "v1",
  track: "stable",
};
/** The server's named port (`weft label --port http=PORT/TCP`), allowed by name. */
export const SERVER_PORT_NAME = "http";

export interface TestedPorts {
  /** iperf3's port: allowed by number (and by the ipBlock rule). */
  iperf: number;
  /** The connect-latency server's port: allowed as the named port `http`. */
  connect: number;
  /** A port the storefront may send to but the catalog does not accept: denied at ingress. */
  denied: number;
}

type Obj = Record<string, unknown>;

const labels = (l: Readonly<Record<string, string>>): Obj => ({ matchLabels: { ...l } });
const expr = (key: string, operator: string, values?: string[]): Obj =>
  values === undefined ? { key, operator } : { key, operator, values };
const tcp = (port: number | string, endPort?: number): Obj =>
  endPort === undefined ? { protocol: "TCP", port } : { protocol: "TCP", port, endPort };
const udp = (port: number): Obj => ({ protocol: "UDP", port });
const sctp = (port: number): Obj => ({ protocol: "SCTP", port });

function policy(namespace: string, name: string, spec: Obj): Obj {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace, name, labels: { "app.kubernetes.io/managed-by": "weft-bench" } },
    spec,
  };
}

interface NamespaceSpec {
  name: string;
  labels: Record<string, string>;
  apps: string[];
}

const NAMESPACES: readonly NamespaceSpec[] = [
  {
    name: POLICY_NAMESPACE,
    labels: { team: "shop", env: "prod" },
    apps: ["cart", "orders", "checkout", "reviews"],
  },
  {
    name: "payments",
    labels: { team: "payments", env: "prod", pci: "true" },
    apps: ["payments-api", "ledger", "fraud", "vault-agent", "refunds"],
  },
  {
    name: "search",
    labels: { team: "search", env: "prod" },
    apps: ["indexer", "query", "suggest", "crawler", "ranker"],
  },
  {
    name: "identity",
    labels: { team: "identity", env: "prod" },
    apps: ["auth", "sessions", "users", "oidc", "mfa"],
  },
  {
    name: "analytics",
    labels: { team: "data", env: "staging" },
    apps: ["ingest", "spark-driver", "notebook", "warehouse", "etl"],
  },
  {
    name: "batch",
    labels: { team: "data", env: "prod" },
    apps: ["scheduler", "worker", "reports", "exporter", "archiver"],
  },
  {
    name: "monitoring",
    labels: { team: "sre", purpose: "monitoring" },
    apps: ["prometheus", "alertmanager", "grafana", "loki", "node-exporter"],
  },
  {
    name: "ingress-nginx",
    labels: { purpose: "ingress" },
    apps: ["controller", "default-backend", "cert-manager", "oauth-proxy", "waf"],
  },
  {
    name: "kube-system",
    labels: { purpose: "system" },
    apps: ["kube-dns", "metrics-server", "kube-proxy", "csi-node", "konnectivity"],
  },
  {
    name: "dev-alice",
    labels: { env: "dev", owner: "alice" },
    apps: ["sandbox", "debug", "api-preview", "db-clone", "jupyter"],
  },
  {
    name: "dev-bob",
    labels: { env: "dev", owner: "bob" },
    apps: ["sandbox", "debug", "api-preview", "db-clone", "load-gen"],
  },
];

/** The policies of `shop` that the tested flow must get through (or past). */
function shopPolicies(ports: TestedPorts): Obj[] {
  const ns = POLICY_NAMESPACE;
  return [
    policy(ns, "default-deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
    policy(ns, "catalog-allow-storefront", {
      podSelector: labels({ app: "catalog" }),
      policyTypes: ["Ingress"],
      ingress: [
        {
          from: [{ podSelector: labels({ app: "storefront" }) }],
          ports: [tcp(ports.iperf), tcp(SERVER_PORT_NAME)],
        },
      ],
    }),
    policy(ns, "catalog-allow-office-cidr", {
      podSelector: labels({ app: "catalog", tier: "backend" }),
      ingress: [
        {
          from: [{ ipBlock: { cidr: "198.19.0.0/16", except: ["198.19.1.128/25"] } }],
          ports: [tcp(ports.iperf)],
        },
      ],
    }),
    policy(ns, "backend-allow-monitoring", {
      podSelector: labels({ tier: "backend" }),
      ingress: [
        {
          from: [
            {
              namespaceSelector: labels({ purpose: "monitoring" }),
              podSelector: labels({ app: "prometheus" }),
            },
          ],
          ports: [tcp(9090), tcp("metrics")],
        },
      ],
    }),
    policy(ns, "storefront-egress-backends", {
      podSelector: labels({ app: "storefront" }),
      policyTypes: ["Egress"],
      egress: [
        {
          to: [{ podSelector: { matchExpressions: [expr("tier", "In", ["backend", "cache"])] } }],
          ports: [tcp(5300, 5499)],
        },
      ],
    }),
    policy(ns, "allow-dns-egress", {
      podSelector: {},
      policyTypes: ["Egress"],
      egress: [
        {
          to: [
            {
              namespaceSelector: labels({ "kubernetes.io/metadata.name": "kube-system" }),
              podSelector: labels({ app: "kube-dns" }),
            },
          ],
          ports: [udp(53), tcp(53)],
        },
      ],
    }),
    policy(ns, "frontend-egress-external-https", {
      podSelector: { matchExpressions: [expr("tier", "In", ["frontend", "edge"])] },
      policyTypes: ["Egress"],
      egress: [
        {
          to: [
            {
              ipBlock: {
                cidr: "0.0.0.0/0",
                except: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15"],
              },
            },
          ],
          ports: [tcp(443)],
        },
      ],
    }),
    policy(ns, "storefront-allow-ingress-controller", {
      podSelector: labels({ app: "storefront" }),
      ingress: [
        { from: [{ namespaceSelector: labels({ purpose: "ingress" }) }], ports: [tcp(8080)] },
      ],
    }),
    policy(ns, "backend-egress-payments", {
      podSelector: labels({ tier: "backend" }),
      policyTypes: ["Egress"],
      egress: [
        {
          to: [
            {
              namespaceSelector: labels({ team: "payments" }),
              podSelector: labels({ app: "payments-api" }),
            },
          ],
          ports: [tcp(8443)],
        },
      ],
    }),
    policy(ns, "canary-isolation", {
      podSelector: { matchExpressions: [expr("track", "In", ["canary"])] },
      ingress: [{ from: [{ podSelector: labels({ track: "canary" }) }] }],
    }),
    policy(ns, "cart-allow-storefront", {
      podSelector: labels({ app: "cart" }),
      ingress: [{ from: [{ podSelector: labels({ app: "storefront" }) }], ports: [tcp(6379)] }],
    }),
    policy(ns, "orders-allow-checkout", {
      podSelector: labels({ app: "orders" }),
      ingress: [
        {
          from: [{ podSelector: { matchExpressions: [expr("app", "In", ["checkout", "cart"])] } }],
          ports: [tcp(8080), tcp(8081)],
        },
      ],
    }),
  ];
}

const TEMPLATES = [
  "ingress",
  "from-teams",
  "egress-cidr",
  "metrics",
  "edge",
  "egress-peers",
  "same-ns",
  "sctp",
] as const;

/** The `k`th policy of namespace `ns` (other than shop), from template `t` (0–7). */
function otherPolicy(ns: NamespaceSpec, k: number, t: number): Obj {
  const app = ns.apps[k % ns.apps.length] as string;
  const peer = ns.apps[(k + 1) % ns.apps.length] as string;
  const name = `${app}-${TEMPLATES[t % TEMPLATES.length] as string}-${k}`;
  switch (t % TEMPLATES.length) {
    case 0:
      return policy(ns.name, name, {
        podSelector: labels({ app }),
        ingress: [{ from: [{ podSelector: labels({ app: peer }) }], ports: [tcp(8000 + k)] }],
      });
    case 1:
      return policy(ns.name, name, {
        podSelector: labels({ app }),
        ingress: [
          {
            from: [
              {
                namespaceSelector: {
                  matchExpressions: [
                    expr("team", "In", ["shop", "identity", ns.labels.team ?? "x"]),
                  ],
                },
                podSelector: { matchExpressions: [expr("app", "In", [peer, "gateway"])] },
              },
            ],
            ports: [tcp(9000, 9100 + k)],
          },
        ],
      });
    case 2:
      return policy(ns.name, name, {
        podSelector: labels({ app }),
        policyTypes: ["Egress"],
        egress: [
          {
            to: [
              { ipBlock: { cidr: `10.${k}.0.0/16`, except: [`10.${k}.1.0/24`, `10.${k}.2.0/24`] } },
            ],
            ports: [udp(53), tcp(5432)],
          },
        ],
      });
    case 3:
      return policy(ns.name, name, {
        podSelector: { matchExpressions: [expr("app", "Exists")] },
        ingress: [
          {
            from: [
              { namespaceSelector: { matchExpressions: [expr("env", "NotIn", ["dev", "test"])] } },
            ],
            ports: [tcp("metrics")],
          },
        ],
      });
    case 4:
      return policy(ns.name, name, {
        podSelector: {
          matchExpressions: [expr("tier", "Exists"), expr("canary", "DoesNotExist")],
        },
        ingress: [
          {
            from: [
              { ipBlock: { cidr: `192.168.${k}.0/24`, except: [`192.168.${k}.128/26`] } },
              { ipBlock: { cidr: `172.20.${k}.0/24` } },
            ],
            ports: [tcp(443), tcp(8443)],
          },
        ],
      });
    case 5:
      return policy(ns.name, name, {
        podSelector: labels({ app }),
        policyTypes: ["Egress"],
        egress: [
          {
            to: [{ namespaceSelector: {}, podSelector: labels({ app: peer }) }],
            ports: [tcp(80), tcp(443)],
          },
        ],
      });
    case 6:
      return policy(ns.name, name, {
        podSelector: labels({ app, version: `v${k % 3}` }),
        policyTypes: ["Ingress", "Egress"],
        ingress: [{ from: [{ podSelector: {} }] }],
        egress: [{ to: [{ podSelector: {} }] }],
      });
    default:
      return policy(ns.name, name, {
        podSelector: labels({ app }),
        ingress: [
          {
            from: [{ namespaceSelector: labels({ team: ns.labels.team ?? "sre" }) }],
            ports: [sctp(3868), udp(4000 + k)],
          },
        ],
      });
  }
}

export interface PolicySet {
  /** File name → YAML text. */
  files: Map<string, string>;
  policies: number;
  namespaces: number;
}

/** The manifests for `count` policies (at least the 12 of shop). */
export function policyManifests(ports: TestedPorts, count = 100): PolicySet {
  const byNamespace = new Map<string, Obj[]>(NAMESPACES.map((ns) => [ns.name, []]));
  for (const ns of NAMESPACES) {
    byNamespace.get(ns.name)?.push({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: ns.name, labels: { ...ns.labels } },
    });
  }
  const shop = shopPolicies(ports);
  byNamespace.get(POLICY_NAMESPACE)?.push(...shop);
  let policies = shop.length;
  const others = NAMESPACES.filter((ns) => ns.name !== POLICY_NAMESPACE);
  // A default-deny-ingress in the production namespaces first, as teams usually start with.
  for (const ns of others) {
    if (policies >= count || ns.labels.env === "dev") continue;
    byNamespace
      .get(ns.name)
      ?.push(
        policy(ns.name, "default-deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }),
      );
    policies++;
  }
  for (let i = 0; policies < count; i++) {
    const n = i % others.length;
    const k = Math.floor(i / others.length);
    byNamespace.get(others[n]!.name)?.push(otherPolicy(others[n]!, k, k + n));
    policies++;
  }
  const files = new Map<string, string>();
  for (const [name, docs] of byNamespace) {
    const text = docs.map((d) => jsYaml.dump(d, { lineWidth: 120, noRefs: true })).join("---\n");
    files.set(`${name}.yaml`, text);
  }
  return { files, policies, namespaces: NAMESPACES.length };
}

/** Writes the set into `dir` (created if needed). */
export function writePolicyDir(dir: string, set: PolicySet): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of set.files) writeFileSync(join(dir, name), text);
}
