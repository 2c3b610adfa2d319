import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ManifestSource,
  loadManifests,
  parseManifestFiles,
  parseManifests,
} from "../../../src/policy/manifests.js";
import { PolicyModelError } from "../../../src/policy/model.js";

const GOOD = `
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels:
    env: prod
    since: 2024-01-01
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
  namespace: prod
spec:
  podSelector:
    matchLabels: {app: db}
  ingress:
    - from:
        - namespaceSelector:
            matchLabels: {env: dev}
          podSelector:
            matchExpressions:
              - {key: app, operator: In, values: [web, api]}
        - ipBlock:
            cidr: 192.168.0.0/16
            except: [192.168.1.0/24]
      ports:
        - port: 5432
        - protocol: UDP
          port: 8000
          endPort: 8100
        - port: metrics
---
# an empty document
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
`;

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyModelError);
    return (err as PolicyModelError).message.split("\n");
  }
  throw new Error("did not throw");
}

describe("parseManifests", () => {
  it("reads multi-document YAML: NetworkPolicies, Namespaces; skips other kinds", () => {
    const set = parseManifests(GOOD, "policies.yaml");
    expect(set.namespaces).toEqual([
      {
        name: "prod",
        labels: { env: "prod", since: "2024-01-01", "kubernetes.io/metadata.name": "prod" },
      },
    ]);
    expect(set.policies.map((p) => `${p.namespace}/${p.name}`)).toEqual([
      "prod/db",
      "default/deny-all",
    ]);
    const db = set.policies[0];
    expect(db?.ingress[0]?.ports).toEqual([
      { protocol: "TCP", port: 5432 },
      { protocol: "UDP", port: 8000, endPort: 8100 },
      { protocol: "TCP", port: "metrics" },
    ]);
    expect(db?.ingress[0]?.peers[1]).toEqual({
      kind: "ipBlock",
      ipBlock: { cidr: "192.168.0.0/16", except: ["192.168.1.0/24"] },
    });
    expect(set.policies[1]?.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(set.ignored).toEqual(["policies.yaml: Deployment prod/web"]);
  });

  it("reads Lists (kubectl get -o yaml) and JSON, with a chosen default namespace", () => {
    const list = JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "a" } },
        {
          apiVersion: "networking.k8s.io/v1",
          kind: "NetworkPolicy",
          metadata: { name: "p" },
          spec: { podSelector: {} },
        },
      ],
    });
    const set = parseManifests(list, "all.json", { defaultNamespace: "team" });
    expect(set.namespaces.map((n) => n.name)).toEqual(["a"]);
    expect(set.policies.map((p) => `${p.namespace}/${p.name}`)).toEqual(["team/p"]);
  });

  it("rejects bad fields, naming file, object and field", () => {
    const text = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {}
  ingress:
    - ports:
        - port: 80
        - port: 0
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: sel, namespace: prod}
spec:
  podSelector:
    matchExpressions: [{key: app, operator: Equals, values: [x]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cidr, namespace: prod}
spec:
  podSelector: {}
  egress:
    - to:
        - ipBlock: {cidr: 10.0.0.0/33}
        - ipBlock: {cidr: 10.0.0.0/16, except: [10.2.0.0/24]}
---
apiVersion: v1
kind: Namespace
metadata: {labels: {a: b}}
`;
    expect(issuesOf(() => parseManifests(text, "bad.yaml"))).toEqual([
      "bad.yaml: NetworkPolicy prod/web: spec.ingress[0].ports[1].port: must be 1-65535 or a name (got 0)",
      'bad.yaml: NetworkPolicy prod/sel: spec.podSelector.matchExpressions[0].operator: unknown operator "Equals" (must be In, NotIn, Exists, DoesNotExist)',
      'bad.yaml: NetworkPolicy prod/cidr: spec.egress[0].to[0].ipBlock.cidr: "10.0.0.0/33" is not a valid CIDR (address/prefix)',
      "bad.yaml: NetworkPolicy prod/cidr: spec.egress[0].to[1].ipBlock.except[0]: 10.2.0.0/24 must be a strict subset of cidr 10.0.0.0/16",
      "bad.yaml: Namespace without a name in document 4: metadata.name: required",
    ]);
  });

  it("names list items in errors", () => {
    const text = `
kind: NetworkPolicyList
items:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: ok}
    spec: {podSelector: {}}
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: bad}
    spec: {podSelector: {}, policyTypes: [Both]}
`;
    expect(issuesOf(() => parseManifests(text, "list.yaml"))).toEqual([
      'list.yaml: NetworkPolicyList in document 1: items[1]: NetworkPolicy default/bad: spec.policyTypes[0]: must be Ingress or Egress (got "Both")',
    ]);
  });

  it("rejects YAML syntax errors, non-objects, missing kinds and duplicates", () => {
    expect(issuesOf(() => parseManifests("a: [1, 2\n", "broken.yaml"))[0]).toMatch(
      /^broken\.yaml: line \d+, column \d+: invalid YAML: /,
    );
    expect(issuesOf(() => parseManifests("a: 1\na: 2\n", "dup-keys.yaml"))[0]).toMatch(
      /^dup-keys\.yaml: line 2, column \d+: invalid YAML: duplicated mapping key/,
    );
    expect(issuesOf(() => parseManifests("--- 42\n", "scalar.yaml"))).toEqual([
      "scalar.yaml: document 1: must be a mapping (a Kubernetes object)",
    ]);
    expect(issuesOf(() => parseManifests("metadata: {name: x}\n", "nokind.yaml"))).toEqual([
      'nokind.yaml: object "x" in document 1: kind: required',
    ]);
    const p = (name: string) =>
      `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ${name}}\nspec: {podSelector: {}}\n`;
    expect(
      issuesOf(() =>
        parseManifestFiles([
          { file: "a.yaml", text: p("x") },
          { file: "b.yaml", text: `${p("y")}---\n${p("x")}` },
        ]),
      ),
    ).toEqual(["b.yaml: NetworkPolicy default/x: defined twice (also in a.yaml)"]);
    const ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n";
    expect(issuesOf(() => parseManifests(`${ns}---\n${ns}`, "ns.yaml"))).toEqual([
      "ns.yaml: Namespace n: defined twice (also in ns.yaml)",
    ]);
  });
});

describe("loading files", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "weft-policy-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const policyText = (name: string, port: unknown) => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ${name}, namespace: prod}
spec:
  podSelector: {}
  ingress: [{ports: [{port: ${JSON.stringify(port)}}]}]
`;

  it("reads files and directories (yaml, yml, json, in name order)", async () => {
    await mkdir(join(dir, "d"));
    await writeFile(join(dir, "d", "b.yml"), policyText("b", 80));
    await writeFile(join(dir, "d", "a.yaml"), policyText("a", 81));
    await writeFile(join(dir, "d", "notes.txt"), "not a manifest");
    await writeFile(
      join(dir, "c.json"),
      JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "prod" } }),
    );
    const set = await loadManifests([join(dir, "d"), join(dir, "c.json")]);
    expect(set.policies.map((p) => p.name)).toEqual(["a", "b"]);
    expect(set.namespaces.map((n) => n.name)).toEqual(["prod"]);
    const missing = join(dir, "nope.yaml");
    await expect(loadManifests([missing])).rejects.toThrow(`${missing}: cannot read: `);
  });

  it("keeps the last good set in force when a reload fails", async () => {
    const file = join(dir, "p.yaml");
    const source = new ManifestSource([file]);
    const first = await source.reload();
    expect(first.ok).toBe(false);
    expect(source.current).toBeUndefined();

    await writeFile(file, policyText("web", 80));
    const good = await source.reload();
    expect(good.ok).toBe(true);
    expect(source.current?.policies[0]?.ingress[0]?.ports[0]?.port).toBe(80);

    await writeFile(file, policyText("web", 0));
    const bad = await source.reload();
    expect(bad.ok).toBe(false);
    if (bad.ok) throw new Error("unreachable");
    expect(bad.error.message).toBe(
      `${file}: NetworkPolicy prod/web: spec.ingress[0].ports[0].port: must be 1-65535 or a name (got 0)`,
    );
    expect(bad.set).toBe(good.set);
    expect(source.current).toBe(good.set);

    await writeFile(file, policyText("web", "http"));
    expect((await source.reload()).ok).toBe(true);
    expect(source.current?.policies[0]?.ingress[0]?.ports[0]?.port).toBe("http");
  });
});
