import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { handleResourceRequest } from "../../../src/api/resource-api.js";
import {
  PolicyController,
  type KernelPolicyBackend,
  type PolicySourceState,
} from "../../../src/policy/controller.js";
import { EndpointDirectory, encodeEndpointGossip } from "../../../src/policy/endpoint-directory.js";
import { PolicyEnforcer } from "../../../src/policy/enforcer.js";
import { makeNamespace, type Endpoint, type NetworkPolicy } from "../../../src/policy/model.js";
import { PolicyDirSource } from "../../../src/policy/policy-dir.js";
import { renderPolicy } from "../../../src/status/render.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger, RateLimitedLog } from "../../../src/util/log.js";
import { TCP_SYN } from "../../../src/policy/packet.js";
import { tcpFrame } from "./frames.js";

const SELF = 0x0a0000000001;
const OTHER = 0x0a0000000002;
const log = new Logger("error");

const dirs: string[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "weft-policy-"));
  dirs.push(d);
  return d;
}

/** Deny all ingress into x's pods labelled pod=b. */
const denyB: NetworkPolicy = {
  namespace: "x",
  name: "deny-b",
  podSelector: { matchLabels: { pod: "b" }, matchExpressions: [] },
  policyTypes: ["Ingress"],
  ingress: [],
  egress: [],
};

function body(name: string, ip: string, extra: Record<string, unknown> = {}): unknown {
  return { namespace: "x", name, labels: { pod: name }, ips: [ip], ports: [], ...extra };
}

function rig(
  opts: { storePath?: string; kernel?: KernelPolicyBackend; sourceLocalsOnSwitch?: boolean } = {},
) {
  const enforcer = new PolicyEnforcer();
  const published: Endpoint[][] = [];
  const listener: { changed?: () => void } = {};
  const directory = new EndpointDirectory(SELF, {
    counters: new Counters(),
    rejectLog: new RateLimitedLog(log, "warn"),
    onChange: () => listener.changed?.(),
  });
  const controller = new PolicyController({
    enforcer,
    directory,
    publish: (eps) => {
      published.push([...eps]);
      directory.setLocal(eps);
    },
    ...(opts.storePath !== undefined ? { storePath: opts.storePath } : {}),
    ...(opts.kernel !== undefined ? { kernel: opts.kernel } : {}),
    log,
    debounceMs: 1,
    sourceStatus: () => ({ source: "test", healthy: true }),
    ...(opts.sourceLocalsOnSwitch !== undefined
      ? { sourceLocalsOnSwitch: opts.sourceLocalsOnSwitch }
      : {}),
  });
  listener.changed = () => controller.directoryChanged();
  cleanups.push(() => controller.stop());
  return { controller, enforcer, directory, published };
}

const tick = (ms = 10): Promise<void> => new Promise((r) => setTimeout(r, ms));
const syn = (src: string, dst: string) => {
  const f = tcpFrame(src, 40000, dst, 80, TCP_SYN);
  return (e: PolicyEnforcer): boolean => e.checkFrame(f, 0, f.length);
};

describe("PolicyController", () => {
  it("hands policies and this host's switch endpoints to the enforcer, and publishes them", async () => {
    const { controller, enforcer, published } = rig();
    controller.put("netns:/run/netns/a", body("a", "198.18.1.1"));
    controller.put("netns:/run/netns/b", body("b", "198.18.1.2"));
    controller.setSource({ policies: [denyB], namespaces: [makeNamespace("x")] });
    await tick();
    expect(syn("198.18.1.1", "198.18.1.2")(enforcer)).toBe(false);
    expect(syn("198.18.1.2", "198.18.1.1")(enforcer)).toBe(true);
    expect(published.at(-1)!.map((e) => e.name)).toEqual(["a", "b"]);
    const status = controller.status();
    expect(status.policies).toEqual([
      { name: "x/deny-b", selects: ["x/b"], allowed: 0, denied: 1 },
    ]);
    expect(status.lastDenied).toHaveLength(1);
    expect(renderPolicy({ Policy: status } as Parameters<typeof renderPolicy>[0])).toContain(
      "x/deny-b  allowed 0  denied 1  selects x/b",
    );
  });

  it("counts generations, and compiles again only when policies change, not labels", async () => {
    const { controller, enforcer } = rig();
    controller.put("netns:/run/netns/b", body("b", "198.18.1.2"));
    controller.setSource({ policies: [denyB], namespaces: [makeNamespace("x", { team: "t" })] });
    await tick();
    const first = controller.status().generation;
    expect(first).toBeGreaterThan(0);
    expect(controller.status().namespaces).toEqual([
      { name: "x", labels: { team: "t", "kubernetes.io/metadata.name": "x" } },
    ]);
    expect(syn("198.18.1.1", "198.18.1.2")(enforcer)).toBe(false);
    const compiles = enforcer.stats().compiles;
    controller.put("netns:/run/netns/b", body("b", "198.18.1.2", { labels: { pod: "b", v: "2" } }));
    await tick();
    expect(controller.status().generation).toBe(first + 1);
    expect(syn("198.18.1.3", "198.18.1.2")(enforcer)).toBe(false);
    expect(enforcer.stats().compiles).toBe(compiles);
  });

  it("judges kernel endpoints nowhere in userspace, but lets policies select them as peers", async () => {
    const applied: number[] = [];
    const kernel: KernelPolicyBackend = {
      apply: (input) => {
        applied.push(input.endpoints.length);
        return Promise.resolve();
      },
    };
    const { controller, enforcer } = rig({ kernel });
    controller.put("netns:/run/netns/b", body("b", "198.18.1.2", { datapath: "kernel" }));
    controller.setSource({ policies: [denyB], namespaces: [] });
    await tick();
    await controller.settled();
    // b is on the kernel path: the switch leaves its traffic to iptables.
    expect(syn("198.18.1.1", "198.18.1.2")(enforcer)).toBe(true);
    expect(applied.at(-1)).toBe(1);
    expect(controller.status().kernel).toEqual({ applied: applied.length });
  });

  it("judges the source's own local pods in the switch only when they sit behind its ports", async () => {
    const pod = { namespace: "x", name: "b", labels: { pod: "b" }, ips: ["198.18.1.2"], ports: [] };
    for (const onSwitch of [true, false]) {
      const { controller, enforcer } = rig({ sourceLocalsOnSwitch: onSwitch });
      controller.setSource({
        policies: [denyB],
        namespaces: [],
        endpoints: [{ ...pod, local: true }],
      });
      await tick();
      expect(syn("198.18.1.1", "198.18.1.2")(enforcer)).toBe(!onSwitch);
      // Either way the status counts it as this host's.
      expect(controller.status().policies[0]!.selects).toEqual(["x/b"]);
    }
  });

  it("reports a kernel backend that fails, and recovers on the next change", async () => {
    let fail = true;
    const kernel: KernelPolicyBackend = {
      apply: () => (fail ? Promise.reject(new Error("iptables-restore: boom")) : Promise.resolve()),
    };
    const { controller } = rig({ kernel });
    controller.setSource({ policies: [denyB], namespaces: [] });
    await tick();
    await controller.settled();
    expect(controller.status().kernel?.error).toBe("iptables-restore: boom");
    fail = false;
    controller.setSource({ policies: [], namespaces: [] });
    await tick();
    await controller.settled();
    expect(controller.status().kernel?.error).toBeUndefined();
  });

  it("selects other hosts' endpoints from the directory as peers", async () => {
    const { controller, enforcer, directory } = rig();
    controller.put("netns:/run/netns/b", body("b", "198.18.1.2"));
    const fromClients: NetworkPolicy = {
      ...denyB,
      name: "from-clients",
      ingress: [
        {
          peers: [
            {
              kind: "pods",
              podSelector: { matchLabels: { role: "client" }, matchExpressions: [] },
            },
          ],
          ports: [],
        },
      ],
    };
    controller.setSource({ policies: [fromClients], namespaces: [] });
    await tick();
    expect(syn("198.18.2.9", "198.18.1.2")(enforcer)).toBe(false);
    const remote = {
      namespace: "x",
      name: "c",
      labels: { role: "client" },
      ips: ["198.18.2.9"],
      ports: [],
    };
    directory.onGossip(
      OTHER,
      encodeEndpointGossip(new Map([[OTHER, { version: 1, endpoints: [remote] }]])),
    );
    await tick();
    expect(syn("198.18.2.9", "198.18.1.2")(enforcer)).toBe(true);
    directory.forgetPeer(OTHER);
    await tick();
    const f = tcpFrame("198.18.2.9", 40001, "198.18.1.2", 80, TCP_SYN);
    expect(enforcer.checkFrame(f, 0, f.length)).toBe(false);
  });

  it("refuses bad registrations with the field named, and a name registered twice", () => {
    const { controller } = rig();
    expect(() => controller.put("netns:/a", body("a", "198.18.1"))).toThrow(/not an IPv4 address/);
    expect(() => controller.put("netns:/a", body("a", "198.18.1.1", { datapath: "tap" }))).toThrow(
      /datapath must be "switch" or "kernel"/,
    );
    controller.put("netns:/a", body("a", "198.18.1.1"));
    expect(() => controller.put("netns:/other", body("a", "198.18.1.5"))).toThrow(
      /x\/a is already netns:\/a/,
    );
  });

  it("keeps the registry across a restart, and sweeps endpoints whose namespace is gone", () => {
    const dir = tempDir();
    const store = join(dir, "registry.json");
    const nsFile = join(dir, "ns-a");
    writeFileSync(nsFile, "");
    const first = rig({ storePath: store }).controller;
    first.put(`netns:${nsFile}`, body("a", "198.18.1.1"));
    first.put("netns:/nonexistent/ns-b", body("b", "198.18.1.2", { datapath: "kernel" }));
    expect(JSON.parse(readFileSync(store, "utf8")).endpoints).toHaveLength(2);
    const second = rig({ storePath: store }).controller;
    expect(second.list().map((l) => [l.id, l.datapath])).toEqual([
      ["netns:/nonexistent/ns-b", "kernel"],
      [`netns:${nsFile}`, "switch"],
    ]);
    second.sweep();
    expect(second.list().map((l) => l.endpoint.name)).toEqual(["a"]);
  });

  it("starts empty, saying why, from a registry file that is not one", () => {
    const dir = tempDir();
    const store = join(dir, "registry.json");
    writeFileSync(store, "{not json");
    expect(rig({ storePath: store }).controller.list()).toEqual([]);
  });
});

describe("PolicyDirSource", () => {
  const manifest = (name: string, pod: string): string =>
    [
      "apiVersion: networking.k8s.io/v1",
      "kind: NetworkPolicy",
      `metadata: {name: ${name}, namespace: x}`,
      `spec: {podSelector: {matchLabels: {pod: ${pod}}}}`,
      "",
    ].join("\n");

  it("loads, reloads on change, and keeps the last good set while a file is bad", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "a.yaml"), manifest("deny-a", "a"));
    const states: PolicySourceState[] = [];
    const source = new PolicyDirSource(dir, (s) => states.push(s), log);
    cleanups.push(() => source.stop());
    await source.start();
    expect(states.at(-1)!.policies.map((p) => p.name)).toEqual(["deny-a"]);
    expect(source.status()).toMatchObject({ healthy: true, source: `policy-dir ${dir}` });

    writeFileSync(join(dir, "b.yaml"), manifest("deny-b", "[1]"));
    await source.reload();
    expect(source.status().healthy).toBe(false);
    expect(source.status().error).toMatch(/b\.yaml: NetworkPolicy x\/deny-b: spec\.podSelector/);
    expect(states).toHaveLength(1);

    writeFileSync(join(dir, "b.yaml"), manifest("deny-b", "b"));
    for (let i = 0; i < 100 && states.length < 2; i++) await tick(20); // fs.watch, debounced
    expect(
      states
        .at(-1)!
        .policies.map((p) => p.name)
        .sort(),
    ).toEqual(["deny-a", "deny-b"]);
    expect(source.status().healthy).toBe(true);
    // A reload that finds the same set passes nothing on.
    await source.reload();
    expect(states).toHaveLength(2);
  });
});

describe("policy API", () => {
  async function serve(controller: PolicyController): Promise<string> {
    const server = http.createServer((req, res) => {
      if (!handleResourceRequest("policy/endpoints", controller, req, res)) {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => server.close());
    const { port } = server.address() as { port: number };
    return `http://127.0.0.1:${port}/policy/endpoints`;
  }

  it("registers, shows, refuses and forgets endpoints", async () => {
    const { controller } = rig();
    const base = await serve(controller);
    const id = encodeURIComponent("netns:/run/netns/a");
    const put = await fetch(`${base}/${id}`, {
      method: "PUT",
      body: JSON.stringify(body("a", "198.18.1.1")),
    });
    expect(put.status).toBe(200);
    expect(((await put.json()) as { datapath: string }).datapath).toBe("switch");
    expect((await (await fetch(base)).json()) as unknown[]).toHaveLength(1);
    expect((await fetch(`${base}/${id}`)).status).toBe(200);
    const bad = await fetch(`${base}/${id}`, { method: "PUT", body: "{" });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/not JSON/);
    const invalid = await fetch(`${base}/${id}`, {
      method: "PUT",
      body: JSON.stringify(body("a", "198.18.1.1", { labels: { pod: "-x" } })),
    });
    expect(invalid.status).toBe(400);
    expect(await invalid.text()).toMatch(/label pod value "-x"/);
    expect((await fetch(`${base}/${id}`, { method: "DELETE" })).status).toBe(204);
    expect((await fetch(`${base}/${id}`)).status).toBe(404);
    expect((await fetch(`${base}/${id}`, { method: "POST" })).status).toBe(405);
  });
});
