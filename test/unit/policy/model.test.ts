import { describe, expect, it } from "vitest";
import {
  NAMESPACE_NAME_LABEL,
  PolicyModelError,
  checkNetworkPolicy,
  cidrStrictlyContains,
  formatIssue,
  makeNamespace,
  namespaceFromObject,
  networkPolicyFromObject,
  parseCidr,
  parseIPv4,
  portNameProblem,
} from "../../../src/policy/model.js";

function policy(
  spec: unknown,
  metadata: Record<string, unknown> = { namespace: "prod", name: "p" },
) {
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata, spec };
}

/** The issues of converting `obj`, formatted. */
function problems(obj: unknown): string[] {
  return checkNetworkPolicy(obj, { file: "np.yaml" }).issues.map(formatIssue);
}

describe("NetworkPolicy conversion", () => {
  it("applies the API server's defaults", () => {
    const p = networkPolicyFromObject(
      policy({ podSelector: {}, ingress: [{ ports: [{ port: 80 }, {}] }] }, { name: "web" }),
    );
    expect(p).toEqual({
      namespace: "default",
      name: "web",
      podSelector: { matchLabels: {}, matchExpressions: [] },
      policyTypes: ["Ingress"],
      ingress: [{ peers: [], ports: [{ protocol: "TCP", port: 80 }, { protocol: "TCP" }] }],
      egress: [],
    });
    const withNs = networkPolicyFromObject(policy({ podSelector: {} }, { name: "x" }), {
      defaultNamespace: "team",
    });
    expect(withNs.namespace).toBe("team");
  });

  it("defaults policyTypes to Ingress, plus Egress when there are egress rules", () => {
    const types = (spec: Record<string, unknown>) =>
      networkPolicyFromObject(policy({ podSelector: {}, ...spec })).policyTypes;
    expect(types({})).toEqual(["Ingress"]);
    expect(types({ egress: [{}] })).toEqual(["Ingress", "Egress"]);
    expect(types({ egress: [] })).toEqual(["Ingress"]);
    expect(types({ egress: null, ingress: null })).toEqual(["Ingress"]);
    expect(types({ policyTypes: [], egress: [{}] })).toEqual(["Ingress", "Egress"]);
    expect(types({ policyTypes: ["Egress"] })).toEqual(["Egress"]);
    expect(types({ policyTypes: ["Egress", "Ingress"], ingress: [{}] })).toEqual([
      "Egress",
      "Ingress",
    ]);
  });

  it("converts peers, selectors, ipBlocks, ports", () => {
    const p = networkPolicyFromObject(
      policy({
        podSelector: { matchLabels: { app: "db" } },
        ingress: [
          {
            from: [
              { podSelector: { matchExpressions: [{ key: "tier", operator: "Exists" }] } },
              { namespaceSelector: { matchLabels: { env: "dev" } }, podSelector: {} },
              { ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } },
            ],
            ports: [
              { protocol: "UDP", port: 53 },
              { port: "http" },
              { protocol: "SCTP", port: 1000, endPort: 2000 },
            ],
          },
        ],
      }),
    );
    expect(p.ingress[0]).toEqual({
      peers: [
        {
          kind: "pods",
          podSelector: {
            matchLabels: {},
            matchExpressions: [{ key: "tier", operator: "Exists", values: [] }],
          },
        },
        {
          kind: "pods",
          podSelector: { matchLabels: {}, matchExpressions: [] },
          namespaceSelector: { matchLabels: { env: "dev" }, matchExpressions: [] },
        },
        { kind: "ipBlock", ipBlock: { cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] } },
      ],
      ports: [
        { protocol: "UDP", port: 53 },
        { protocol: "TCP", port: "http" },
        { protocol: "SCTP", port: 1000, endPort: 2000 },
      ],
    });
  });

  it("names file, object and field in every issue, and collects them all", () => {
    expect(
      problems(
        policy({
          podSelector: {},
          ingress: [{ ports: [{ port: 80 }, { port: 0 }, { port: "80" }, { port: 70000 }] }],
        }),
      ),
    ).toEqual([
      "np.yaml: NetworkPolicy prod/p: spec.ingress[0].ports[1].port: must be 1-65535 or a name (got 0)",
      'np.yaml: NetworkPolicy prod/p: spec.ingress[0].ports[2].port: must be 1-65535 or a name (got "80")',
      "np.yaml: NetworkPolicy prod/p: spec.ingress[0].ports[3].port: must be 1-65535 or a name (got 70000)",
    ]);
  });

  const bad: [string, unknown, string][] = [
    [
      "unknown operator",
      { podSelector: { matchExpressions: [{ key: "a", operator: "Equals", values: ["b"] }] } },
      'spec.podSelector.matchExpressions[0].operator: unknown operator "Equals" (must be In, NotIn, Exists, DoesNotExist)',
    ],
    [
      "In without values",
      { podSelector: { matchExpressions: [{ key: "a", operator: "In" }] } },
      "spec.podSelector.matchExpressions[0].values: must be non-empty for In",
    ],
    [
      "Exists with values",
      { podSelector: { matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] } },
      "spec.podSelector.matchExpressions[0].values: must be empty for Exists",
    ],
    [
      "bad CIDR",
      { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.300/8" } }] }] },
      'spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.300/8" is not a valid CIDR (address/prefix)',
    ],
    [
      "CIDR without prefix",
      { podSelector: {}, egress: [{ to: [{ ipBlock: { cidr: "10.0.0.1" } }] }] },
      'spec.egress[0].to[0].ipBlock.cidr: "10.0.0.1" is not a valid CIDR (address/prefix)',
    ],
    [
      "except outside the block",
      {
        podSelector: {},
        ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.1.0.0/24"] } }] }],
      },
      "spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 must be a strict subset of cidr 10.0.0.0/16",
    ],
    [
      "except equal to the block",
      {
        podSelector: {},
        ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.0.0/16"] } }] }],
      },
      "spec.ingress[0].from[0].ipBlock.except[0]: 10.0.0.0/16 must be a strict subset of cidr 10.0.0.0/16",
    ],
    [
      "ipBlock with a selector",
      {
        podSelector: {},
        ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }],
      },
      "spec.ingress[0].from[0]: ipBlock may not be combined with podSelector or namespaceSelector",
    ],
    [
      "empty peer",
      { podSelector: {}, ingress: [{ from: [{}] }] },
      "spec.ingress[0].from[0]: must specify podSelector, namespaceSelector or ipBlock",
    ],
    [
      "unknown protocol",
      { podSelector: {}, ingress: [{ ports: [{ protocol: "tcp", port: 80 }] }] },
      'spec.ingress[0].ports[0].protocol: must be TCP, UDP or SCTP (got "tcp")',
    ],
    [
      "endPort below port",
      { podSelector: {}, ingress: [{ ports: [{ port: 90, endPort: 80 }] }] },
      "spec.ingress[0].ports[0].endPort: must be at least port (90)",
    ],
    [
      "endPort with a named port",
      { podSelector: {}, ingress: [{ ports: [{ port: "http", endPort: 80 }] }] },
      "spec.ingress[0].ports[0].endPort: may not be given with a named port",
    ],
    [
      "endPort without port",
      { podSelector: {}, ingress: [{ ports: [{ endPort: 80 }] }] },
      "spec.ingress[0].ports[0].endPort: may not be given without port",
    ],
    [
      "bad port name",
      { podSelector: {}, ingress: [{ ports: [{ port: "HTTP" }] }] },
      "spec.ingress[0].ports[0].port: must be 1-65535 or a name (a port name must be lowercase letters, digits and '-') (got \"HTTP\")",
    ],
    [
      "misspelt field",
      { podSelector: {}, ingres: [{}] },
      "spec.ingres: unknown field (expected one of podSelector, policyTypes, ingress, egress)",
    ],
    [
      "missing podSelector",
      { ingress: [{}] },
      "spec.podSelector: required (write {} to select every pod of the namespace)",
    ],
    [
      "bad policy type",
      { podSelector: {}, policyTypes: ["ingress"] },
      'spec.policyTypes[0]: must be Ingress or Egress (got "ingress")',
    ],
    [
      "number as a label value",
      { podSelector: { matchLabels: { version: 2 } } },
      'spec.podSelector.matchLabels["version"]: must be a string (got 2; quote it in YAML)',
    ],
    [
      "bad label key",
      { podSelector: { matchLabels: { "bad key": "x" } } },
      "spec.podSelector.matchLabels[\"bad key\"]: invalid label key: name must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    ],
    [
      "a port that is not an object",
      { podSelector: {}, ingress: [{ ports: [80] }] },
      "spec.ingress[0].ports[0]: must be an object (got 80)",
    ],
    [
      "rules that are not a list",
      { podSelector: {}, ingress: { from: [] } },
      "spec.ingress: must be a list (got an object)",
    ],
  ];
  for (const [name, spec, want] of bad) {
    it(`rejects: ${name}`, () => {
      expect(problems(policy(spec))).toEqual([`np.yaml: NetworkPolicy prod/p: ${want}`]);
      expect(() => networkPolicyFromObject(policy(spec))).toThrow(PolicyModelError);
    });
  }

  it("checks the object's header and metadata", () => {
    expect(
      problems({
        apiVersion: "extensions/v1beta1",
        kind: "NetworkPolicy",
        metadata: { name: "Web" },
        spec: { podSelector: {} },
      }),
    ).toEqual([
      'np.yaml: NetworkPolicy default/Web: apiVersion: must be networking.k8s.io/v1 for NetworkPolicy (got "extensions/v1beta1")',
      "np.yaml: NetworkPolicy default/Web: metadata.name: \"Web\" must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
    ]);
    expect(
      checkNetworkPolicy(policy({ podSelector: {} }, {}), {
        file: "f.yaml",
        document: 3,
      }).issues.map(formatIssue),
    ).toEqual(["f.yaml: NetworkPolicy without a name in document 3: metadata.name: required"]);
    expect(problems(policy(undefined))).toEqual(["np.yaml: NetworkPolicy prod/p: spec: required"]);
    expect(problems({ ...policy({ podSelector: {} }), extra: 1 })[0]).toMatch(
      /NetworkPolicy prod\/p: extra: unknown field/,
    );
    expect(problems("hello")).toEqual(['np.yaml: object: must be an object (got "hello")']);
  });
});

describe("Namespace conversion", () => {
  it("adds the automatic name label, overriding any other value", () => {
    expect(
      namespaceFromObject({
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name: "prod", labels: { env: "prod", [NAMESPACE_NAME_LABEL]: "lie" } },
      }),
    ).toEqual({ name: "prod", labels: { env: "prod", [NAMESPACE_NAME_LABEL]: "prod" } });
    expect(makeNamespace("x")).toEqual({ name: "x", labels: { [NAMESPACE_NAME_LABEL]: "x" } });
  });

  it("rejects bad names and labels", () => {
    expect(() =>
      namespaceFromObject(
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "a.b", labels: { x: true } } },
        { file: "ns.yaml" },
      ),
    ).toThrow(
      [
        "ns.yaml: Namespace a.b: metadata.name: \"a.b\" must be lowercase letters, digits and '-', starting and ending with a letter or digit",
        'ns.yaml: Namespace a.b: metadata.labels["x"]: must be a string (got true; quote it in YAML)',
      ].join("\n"),
    );
  });
});

describe("addresses", () => {
  it("parse dotted quads strictly", () => {
    expect(parseIPv4("10.0.0.1")).toBe(0x0a000001);
    expect(parseIPv4("255.255.255.255")).toBe(0xffffffff);
    for (const bad of ["10.0.0", "10.0.0.256", "010.0.0.1", "1.2.3.4.5", "a.b.c.d", ""]) {
      expect(parseIPv4(bad), bad).toBeUndefined();
    }
  });

  it("parse CIDRs, clearing host bits, IPv4 and IPv6", () => {
    expect(parseCidr("10.1.2.3/8")).toEqual({ family: 4, network: 0x0a000000n, prefix: 8 });
    expect(parseCidr("0.0.0.0/0")).toEqual({ family: 4, network: 0n, prefix: 0 });
    expect(parseCidr("fd00::1/8")).toEqual({ family: 6, network: 0xfdn << 120n, prefix: 8 });
    expect(parseCidr("::ffff:10.0.0.1/128")).toEqual({
      family: 6,
      network: (0xffffn << 32n) | 0x0a000001n,
      prefix: 128,
    });
    for (const bad of [
      "10.0.0.0/33",
      "10.0.0.0/",
      "10.0.0.0/08",
      "fd00::/129",
      "fe80::1%eth0/64",
      "x/1",
    ]) {
      expect(typeof parseCidr(bad), bad).toBe("string");
    }
  });

  it("tell strict subsets", () => {
    const c = (t: string) => {
      const p = parseCidr(t);
      if (typeof p === "string") throw new Error(p);
      return p;
    };
    expect(cidrStrictlyContains(c("10.0.0.0/8"), c("10.255.0.0/16"))).toBe(true);
    expect(cidrStrictlyContains(c("10.0.0.0/8"), c("10.0.0.0/8"))).toBe(false);
    expect(cidrStrictlyContains(c("10.0.0.0/8"), c("11.0.0.0/16"))).toBe(false);
    expect(cidrStrictlyContains(c("10.0.0.0/16"), c("10.0.0.0/8"))).toBe(false);
    expect(cidrStrictlyContains(c("0.0.0.0/0"), c("1.2.3.4/32"))).toBe(true);
    expect(cidrStrictlyContains(c("fd00::/8"), c("fd12::/16"))).toBe(true);
    expect(cidrStrictlyContains(c("fd00::/8"), c("10.0.0.0/16"))).toBe(false);
  });

  it("check port names", () => {
    expect(portNameProblem("http")).toBeUndefined();
    expect(portNameProblem("h2c-tls")).toBeUndefined();
    expect(portNameProblem("8080")).toMatch(/letter/);
    expect(portNameProblem("a--b")).toMatch(/--/);
    expect(portNameProblem("-a")).toMatch(/begin/);
    expect(portNameProblem("a".repeat(16))).toMatch(/1-15/);
  });
});
