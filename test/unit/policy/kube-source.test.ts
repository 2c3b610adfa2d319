import { mkdtemp, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import {
  KubeSource,
  type KubeSnapshot,
  type KubeSourceOptions,
  backoffDelay,
  loadKubeConfig,
  podEndpoint,
} from "../../../src/policy/kube-source.js";
import { Logger } from "../../../src/util/log.js";

type Obj = Record<string, unknown>;
type Resource = "namespaces" | "pods" | "networkpolicies";

const PATHS: Record<string, Resource> = {
  "/api/v1/namespaces": "namespaces",
  "/api/v1/pods": "pods",
  "/apis/networking.k8s.io/v1/networkpolicies": "networkpolicies",
};
const KINDS: Record<Resource, { kind: string; apiVersion: string }> = {
  namespaces: { kind: "Namespace", apiVersion: "v1" },
  pods: { kind: "Pod", apiVersion: "v1" },
  networkpolicies: { kind: "NetworkPolicy", apiVersion: "networking.k8s.io/v1" },
};
const TOKEN = "test-token";

interface Request {
  readonly resource: Resource;
  readonly watch: boolean;
  readonly resourceVersion: string | null;
  readonly authorization: string | undefined;
  readonly at: number;
}

interface OpenWatch {
  readonly resource: Resource;
  readonly res: http.ServerResponse;
}

function keyOf(obj: Obj): string {
  const m = obj.metadata as Obj;
  return m.namespace === undefined ? String(m.name) : `${String(m.namespace)}/${String(m.name)}`;
}

/**
 * Enough of kube-apiserver for list and watch: one resourceVersion counter for all kinds (as
 * etcd has), an event log that watches replay from their resourceVersion, and compaction, after
 * which older watches get 410 Gone as an ERROR event or as HTTP 410 (`goneAs`).
 */
class FakeApiServer {
  port = 0;
  goneAs: "event" | "http" = "event";
  /** Watches end as soon as they open (a misbehaving server or proxy). */
  closeWatchesAtOnce = false;
  readonly requests: Request[] = [];
  private server: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<OpenWatch>();
  private rv = 100;
  private compactedRv = 0;
  private readonly stores: Record<Resource, Map<string, Obj>> = {
    namespaces: new Map(),
    pods: new Map(),
    networkpolicies: new Map(),
  };
  private readonly events: { rv: number; resource: Resource; type: string; object: Obj }[] = [];

  async start(port = 0): Promise<void> {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Stops answering: closes the listener and every connection. */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    this.watches.clear();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  lists(resource?: Resource): number {
    return this.requests.filter(
      (r) => !r.watch && (resource === undefined || r.resource === resource),
    ).length;
  }

  watchRequests(resource: Resource): Request[] {
    return this.requests.filter((r) => r.watch && r.resource === resource);
  }

  openWatches(): number {
    return this.watches.size;
  }

  /** Creates or replaces an object, with an ADDED or MODIFIED event. */
  put(resource: Resource, obj: Obj): void {
    const stored = this.store(resource, obj);
    const type = this.stores[resource].has(keyOf(obj)) ? "MODIFIED" : "ADDED";
    this.stores[resource].set(keyOf(obj), stored);
    this.emit(resource, type, stored);
  }

  remove(resource: Resource, key: string): void {
    const obj = this.stores[resource].get(key);
    if (obj === undefined) throw new Error(`no ${resource} ${key}`);
    this.stores[resource].delete(key);
    this.emit(resource, "DELETED", { ...obj, metadata: { ...(obj.metadata as Obj) } });
  }

  /** Changes the store without events, as if they had been lost to compaction. */
  putSilently(resource: Resource, obj: Obj): void {
    this.stores[resource].set(keyOf(obj), this.store(resource, obj));
  }

  removeSilently(resource: Resource, key: string): void {
    this.stores[resource].delete(key);
  }

  /** Forgets history: watches from before now get 410; open watches are ended unless told. */
  compact(endWatches = true): void {
    this.rv++;
    this.compactedRv = this.rv;
    if (!endWatches) return;
    for (const w of this.watches) w.res.end();
    this.watches.clear();
  }

  /** Destroys the connections of open watches, with no goodbye. */
  dropWatches(): void {
    for (const w of this.watches) w.res.socket?.destroy();
    this.watches.clear();
  }

  /** Sends a raw event line to the open watches of `resource`. */
  send(resource: Resource, event: Obj): void {
    for (const w of this.watches) {
      if (w.resource === resource) w.res.write(JSON.stringify(event) + "\n");
    }
  }

  private store(resource: Resource, obj: Obj): Obj {
    this.rv++;
    return {
      ...KINDS[resource],
      ...obj,
      metadata: { ...(obj.metadata as Obj), resourceVersion: String(this.rv) },
    };
  }

  private emit(resource: Resource, type: string, object: Obj): void {
    if (type === "DELETED") {
      this.rv++;
      object.metadata = { ...(object.metadata as Obj), resourceVersion: String(this.rv) };
    }
    this.events.push({ rv: this.rv, resource, type, object });
    this.send(resource, { type, object });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://localhost");
    const resource = PATHS[url.pathname];
    if (resource === undefined || req.method !== "GET") {
      res.writeHead(404).end();
      return;
    }
    const watch = url.searchParams.get("watch") === "true";
    const resourceVersion = url.searchParams.get("resourceVersion");
    this.requests.push({
      resource,
      watch,
      resourceVersion,
      authorization: req.headers.authorization,
      at: Date.now(),
    });
    if (!watch) {
      const items = [...this.stores[resource].values()].map((o) => {
        // The API server leaves kind and apiVersion out of list items.
        const { kind: _kind, apiVersion: _apiVersion, ...rest } = o;
        return rest;
      });
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(
        JSON.stringify({
          kind: `${KINDS[resource].kind}List`,
          apiVersion: KINDS[resource].apiVersion,
          metadata: { resourceVersion: String(this.rv) },
          items,
        }),
      );
      return;
    }
    const from = Number(resourceVersion ?? "0");
    const gone = goneStatus(from, this.compactedRv);
    if (from < this.compactedRv && this.goneAs === "http") {
      res.writeHead(410, { "Content-Type": "application/json" });
      res.end(JSON.stringify(gone));
      return;
    }
    res.writeHead(200, { "Content-Type": "application/json" });
    res.flushHeaders();
    if (from < this.compactedRv) {
      res.end(JSON.stringify({ type: "ERROR", object: gone }) + "\n");
      return;
    }
    if (this.closeWatchesAtOnce) {
      res.end();
      return;
    }
    for (const e of this.events) {
      if (e.resource === resource && e.rv > from) {
        res.write(JSON.stringify({ type: e.type, object: e.object }) + "\n");
      }
    }
    const open = { resource, res };
    this.watches.add(open);
    res.on("close", () => this.watches.delete(open));
  }
}

function goneStatus(from: number, compacted: number): Obj {
  return {
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    message: `too old resource version: ${from} (${compacted})`,
    reason: "Expired",
    code: 410,
  };
}

function namespace(name: string, labels: Record<string, string> = {}): Obj {
  return { metadata: { name, labels }, spec: { finalizers: ["kubernetes"] } };
}

interface PodSpec {
  labels?: Record<string, string>;
  node?: string;
  ips?: string[];
  podIP?: string;
  ports?: Obj[];
  hostNetwork?: boolean;
  phase?: string;
}

function pod(ns: string, name: string, p: PodSpec = {}): Obj {
  return {
    metadata: { namespace: ns, name, labels: p.labels ?? {} },
    spec: {
      ...(p.node !== undefined ? { nodeName: p.node } : {}),
      ...(p.hostNetwork !== undefined ? { hostNetwork: p.hostNetwork } : {}),
      containers: [{ name: "main", image: "x", ports: p.ports ?? [] }],
    },
    status: {
      phase: p.phase ?? "Running",
      ...(p.podIP !== undefined ? { podIP: p.podIP } : {}),
      ...(p.ips !== undefined ? { podIPs: p.ips.map((ip) => ({ ip })) } : {}),
    },
  };
}

function policy(ns: string, name: string, spec: Obj): Obj {
  return { metadata: { namespace: ns, name }, spec };
}

const DENY_ALL = { podSelector: {}, policyTypes: ["Ingress"] };

function kubeConfig(port: number): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "weft", token: TOKEN }],
    contexts: [{ name: "fake", cluster: "fake", user: "weft" }],
    currentContext: "fake",
  });
  return kc;
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const BACKOFF = { initialMs: 20, maxMs: 100, jitter: 0, resetAfterMs: 5000 };

interface Harness {
  server: FakeApiServer;
  source: KubeSource;
  changes: KubeSnapshot[];
  logLines: string[];
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function harness(
  seed: (server: FakeApiServer) => void = () => {},
  options: Partial<KubeSourceOptions> = {},
  serverUp = true,
): Promise<Harness> {
  const server = new FakeApiServer();
  await server.start();
  seed(server);
  if (!serverUp) await server.stop();
  const changes: KubeSnapshot[] = [];
  const logLines: string[] = [];
  const source = new KubeSource({
    kubeConfig: kubeConfig(server.port),
    nodeName: "node-a",
    onChange: (s) => changes.push(s),
    logger: new Logger("info", { write: (line) => void logLines.push(line) }),
    backoff: BACKOFF,
    debounceMs: 5,
    ...options,
  });
  cleanups.push(async () => {
    source.stop();
    await server.stop();
  });
  source.start();
  return { server, source, changes, logLines };
}

function names(list: readonly { namespace?: string; name: string }[]): string[] {
  return list.map((o) => (o.namespace === undefined ? o.name : `${o.namespace}/${o.name}`));
}

function seedCluster(server: FakeApiServer): void {
  server.put("namespaces", namespace("default"));
  server.put("namespaces", namespace("prod", { env: "prod" }));
  server.put(
    "pods",
    pod("prod", "web-1", {
      labels: { app: "web" },
      node: "node-a",
      ips: ["10.32.0.5", "fd00::5"],
      ports: [
        { name: "http", containerPort: 8080, protocol: "TCP" },
        { name: "dns", containerPort: 53, protocol: "UDP" },
        { containerPort: 9090 },
      ],
    }),
  );
  server.put(
    "pods",
    pod("prod", "db-1", { labels: { app: "db" }, node: "node-b", podIP: "10.40.0.7" }),
  );
  server.put("networkpolicies", policy("prod", "deny-all", DENY_ALL));
}

/** Every kind is listed and watching. */
function live(h: Harness): () => boolean {
  return () => h.source.status().connected && h.server.openWatches() === 3;
}

describe("backoffDelay", () => {
  it("doubles from the initial delay up to the maximum, and jitter only shortens", () => {
    const options = { initialMs: 100, maxMs: 1000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(backoffDelay(2, { ...options, jitter: 0.5 }, () => 1)).toBe(100);
    expect(backoffDelay(2, { ...options, jitter: 0.5 }, () => 0)).toBe(200);
  });
});

describe("loadKubeConfig", () => {
  it("reads the kubeconfig file it is given", async () => {
    const dir = await mkdtemp(join(tmpdir(), "weft-kube-"));
    try {
      const file = join(dir, "config");
      await writeFile(
        file,
        [
          "apiVersion: v1",
          "kind: Config",
          "clusters: [{name: c, cluster: {server: 'https://10.0.0.1:6443'}}]",
          "users: [{name: u, user: {token: t}}]",
          "contexts: [{name: x, context: {cluster: c, user: u}}]",
          "current-context: x",
        ].join("\n"),
      );
      expect(loadKubeConfig(file).getCurrentCluster()?.server).toBe("https://10.0.0.1:6443");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("podEndpoint", () => {
  it("takes labels, IPv4 addresses and named ports, and marks pods of this node local", () => {
    const e = podEndpoint(
      pod("prod", "web-1", {
        labels: { app: "web" },
        node: "node-a",
        ips: ["10.32.0.5", "fd00::5"],
        podIP: "10.32.0.5",
        ports: [
          { name: "http", containerPort: 8080 },
          { name: "dns", containerPort: 53, protocol: "UDP" },
          { containerPort: 9090 },
        ],
      }),
      "node-a",
    );
    expect(e).toEqual({
      namespace: "prod",
      name: "web-1",
      labels: { app: "web" },
      ips: ["10.32.0.5"],
      ports: [
        { name: "http", port: 8080, protocol: "TCP" },
        { name: "dns", port: 53, protocol: "UDP" },
      ],
      local: true,
      nodeName: "node-a",
    });
    expect(podEndpoint(pod("prod", "p", { podIP: "10.0.0.1" }), "node-a")).toMatchObject({
      ips: ["10.0.0.1"],
      local: false,
    });
  });

  it("leaves out host-network and finished pods", () => {
    expect(podEndpoint(pod("a", "h", { hostNetwork: true, podIP: "192.0.2.1" }), "n")).toBe(
      undefined,
    );
    expect(podEndpoint(pod("a", "done", { phase: "Succeeded" }), "n")).toBe(undefined);
    expect(podEndpoint(pod("a", "failed", { phase: "Failed" }), "n")).toBe(undefined);
  });
});

describe("KubeSource", () => {
  it("lists every kind with the kubeconfig's token, then delivers the full snapshot", async () => {
    const h = await harness((server) => {
      seedCluster(server);
      server.put("pods", pod("prod", "host", { hostNetwork: true, podIP: "192.0.2.1" }));
    });
    await waitFor(() => h.changes.length > 0, "the first snapshot");
    const snap = h.changes[0] as KubeSnapshot;
    expect(snap).toEqual(h.source.snapshot());
    expect(snap.namespaces).toEqual([
      { name: "default", labels: { "kubernetes.io/metadata.name": "default" } },
      { name: "prod", labels: { env: "prod", "kubernetes.io/metadata.name": "prod" } },
    ]);
    expect(snap.endpoints).toEqual([
      {
        namespace: "prod",
        name: "db-1",
        labels: { app: "db" },
        ips: ["10.40.0.7"],
        ports: [],
        local: false,
        nodeName: "node-b",
      },
      {
        namespace: "prod",
        name: "web-1",
        labels: { app: "web" },
        ips: ["10.32.0.5"],
        ports: [
          { name: "http", port: 8080, protocol: "TCP" },
          { name: "dns", port: 53, protocol: "UDP" },
        ],
        local: true,
        nodeName: "node-a",
      },
    ]);
    expect(snap.policies).toEqual([
      {
        namespace: "prod",
        name: "deny-all",
        podSelector: { matchLabels: {}, matchExpressions: [] },
        policyTypes: ["Ingress"],
        ingress: [],
        egress: [],
      },
    ]);
    expect(h.source.endpoints().filter((e) => e.local)).toHaveLength(1);
    await waitFor(live(h), "the watches");
    for (const r of h.server.requests) expect(r.authorization).toBe(`Bearer ${TOKEN}`);
    const status = h.source.status();
    expect(status).toMatchObject({ connected: true, synced: true, invalidObjects: 0 });
    expect(status.lastError).toBeUndefined();
    expect(status.lastSyncAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(status.summary).toBe("watching the Kubernetes API");
    for (const r of status.resources) {
      expect(r).toMatchObject({ state: "watching", connected: true, synced: true, relists: 0 });
      expect(r.resourceVersion).toBe("106");
      // Each watch starts at the version of its list.
      expect(h.server.watchRequests(r.resource)[0]?.resourceVersion).toBe("106");
    }
  });

  it("follows watch events for pods, namespace labels and policies", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server, source } = h;

    server.put(
      "pods",
      pod("prod", "web-2", { labels: { app: "web" }, node: "node-a", podIP: "10.32.0.6" }),
    );
    await waitFor(() => names(source.endpoints()).includes("prod/web-2"), "pod added");
    server.put(
      "pods",
      pod("prod", "web-2", { labels: { app: "api" }, node: "node-a", podIP: "10.32.0.6" }),
    );
    await waitFor(
      () => source.endpoints().find((e) => e.name === "web-2")?.labels.app === "api",
      "pod relabelled",
    );
    server.remove("pods", "prod/db-1");
    await waitFor(() => !names(source.endpoints()).includes("prod/db-1"), "pod deleted");
    // A pod that finishes leaves the peer sets.
    server.put("pods", pod("prod", "web-2", { labels: { app: "api" }, phase: "Succeeded" }));
    await waitFor(() => !names(source.endpoints()).includes("prod/web-2"), "pod finished");

    server.put("namespaces", namespace("dev", { env: "dev" }));
    await waitFor(() => names(source.namespaces()).includes("dev"), "namespace added");
    server.put("namespaces", namespace("dev", { env: "test", team: "a" }));
    await waitFor(
      () => source.namespaces().find((n) => n.name === "dev")?.labels.env === "test",
      "namespace relabelled",
    );
    expect(source.namespaces().find((n) => n.name === "dev")?.labels).toEqual({
      env: "test",
      team: "a",
      "kubernetes.io/metadata.name": "dev",
    });
    server.remove("namespaces", "dev");
    await waitFor(() => !names(source.namespaces()).includes("dev"), "namespace deleted");

    const allowWeb = {
      podSelector: { matchLabels: { app: "db" } },
      ingress: [
        { from: [{ podSelector: { matchLabels: { app: "web" } } }], ports: [{ port: "http" }] },
      ],
    };
    server.put("networkpolicies", policy("prod", "allow-web", allowWeb));
    await waitFor(() => names(source.policies()).includes("prod/allow-web"), "policy added");
    expect(source.policies().find((p) => p.name === "allow-web")?.ingress[0]?.ports).toEqual([
      { protocol: "TCP", port: "http" },
    ]);
    server.put("networkpolicies", policy("prod", "allow-web", { ...allowWeb, egress: [{}] }));
    await waitFor(
      () => source.policies().find((p) => p.name === "allow-web")?.policyTypes.length === 2,
      "policy modified",
    );
    server.remove("networkpolicies", "prod/deny-all");
    await waitFor(() => !names(source.policies()).includes("prod/deny-all"), "policy deleted");

    await waitFor(
      () => JSON.stringify(h.changes.at(-1)) === JSON.stringify(source.snapshot()),
      "onChange to catch up",
    );
    expect(server.lists()).toBe(3);
    const versions = source.status().resources.map((r) => Number(r.resourceVersion));
    expect(Math.max(...versions)).toBeGreaterThan(106);
  });

  it("relists after a 410 Gone ERROR event and drops what was deleted meanwhile", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server, source } = h;
    server.removeSilently("pods", "prod/db-1");
    server.putSilently("namespaces", namespace("prod", { env: "staging" }));
    server.putSilently("networkpolicies", policy("prod", "new", DENY_ALL));
    server.compact(false);
    for (const resource of ["namespaces", "pods", "networkpolicies"] as const) {
      server.send(resource, { type: "ERROR", object: goneStatus(105, 106) });
    }
    await waitFor(
      () => source.status().resources.every((r) => r.relists === 1 && r.connected),
      "relists",
    );
    expect(names(source.endpoints())).toEqual(["prod/web-1"]);
    expect(source.namespaces().find((n) => n.name === "prod")?.labels.env).toBe("staging");
    expect(names(source.policies())).toEqual(["prod/deny-all", "prod/new"]);
    expect(server.lists()).toBe(6);
    // One failure each: the relist came at once, not after a back-off.
    expect(source.status().resources.map((r) => r.failures)).toEqual([1, 1, 1]);
    expect(h.logLines.some((l) => l.includes("resourceVersion expired; relisting"))).toBe(true);
    await waitFor(
      () => JSON.stringify(h.changes.at(-1)) === JSON.stringify(source.snapshot()),
      "onChange after the relist",
    );

    // The new watches start at the new list's version and follow events again.
    server.put("pods", pod("prod", "late", { podIP: "10.32.0.9" }));
    await waitFor(() => names(source.endpoints()).includes("prod/late"), "event after relist");
  });

  it("relists after HTTP 410 on the watch request", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server, source } = h;
    server.goneAs = "http";
    server.removeSilently("networkpolicies", "prod/deny-all");
    server.putSilently(
      "pods",
      pod("prod", "web-1", { labels: { app: "web", v: "2" }, podIP: "10.32.0.5" }),
    );
    server.compact();
    await waitFor(
      () => source.status().resources.every((r) => r.relists === 1 && r.connected),
      "relists",
    );
    expect(source.policies()).toEqual([]);
    expect(source.endpoints().find((e) => e.name === "web-1")?.labels).toEqual({
      app: "web",
      v: "2",
    });
    expect(server.lists()).toBe(6);
  });

  it("reconnects after a dropped connection, with back-off, and picks up changes", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server, source } = h;
    const version = source.status().resources.find((r) => r.resource === "pods")?.resourceVersion;
    const dropped = Date.now();
    server.dropWatches();
    server.put("pods", pod("prod", "web-3", { podIP: "10.32.0.10" }));
    server.put("networkpolicies", policy("prod", "other", DENY_ALL));
    await waitFor(() => names(source.endpoints()).includes("prod/web-3"), "pod after reconnect");
    await waitFor(() => names(source.policies()).includes("prod/other"), "policy after reconnect");
    await waitFor(live(h), "the watches again");
    // Resumed from the last resourceVersion: no relist, and not before the first back-off.
    expect(server.lists()).toBe(3);
    const rewatch = server.watchRequests("pods")[1];
    expect(rewatch?.resourceVersion).toBe(version);
    expect((rewatch?.at ?? 0) - dropped).toBeGreaterThanOrEqual(BACKOFF.initialMs - 2);
    expect(source.status().resources.every((r) => r.reconnects === 1 && r.relists === 0)).toBe(
      true,
    );
  });

  it("retries a watch that ends with a non-410 ERROR event from the same resourceVersion", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server, source } = h;
    const version = source.status().resources.find((r) => r.resource === "pods")?.resourceVersion;
    server.send("pods", {
      type: "ERROR",
      object: { kind: "Status", status: "Failure", message: "etcd is sad", code: 500 },
    });
    await waitFor(() => server.watchRequests("pods").length === 2, "a new pods watch");
    await waitFor(live(h), "the watches again");
    expect(server.watchRequests("pods")[1]?.resourceVersion).toBe(version);
    expect(server.lists()).toBe(3);
    expect(source.status().resources.find((r) => r.resource === "pods")?.lastError).toContain(
      "etcd is sad",
    );
  });

  it("backs off between watches that the server closes at once", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server } = h;
    server.closeWatchesAtOnce = true;
    server.dropWatches();
    await waitFor(() => server.watchRequests("pods").length >= 6, "five rewatches", 5000);
    const times = server.watchRequests("pods").map((r) => r.at);
    // After the drop: waits of 20, 40, 80, 100 and 100 ms, each from the end of the last watch.
    const waits = [40, 80, 100, 100];
    waits.forEach((wait, i) => {
      const gap = (times[i + 2] ?? 0) - (times[i + 1] ?? 0);
      expect(gap).toBeGreaterThanOrEqual(wait - 2);
    });
    expect(server.lists()).toBe(3);
  });

  it("starts empty while the API server is down, says so, and syncs when it comes up", async () => {
    const h = await harness(seedCluster, {}, false);
    const { server, source } = h;
    await waitFor(() => source.status().resources.every((r) => r.failures >= 2), "failed attempts");
    const status = source.status();
    expect(status).toMatchObject({ connected: false, synced: false });
    expect(status.lastError).toMatch(/ECONNREFUSED/);
    expect(status.retryInMs).toBeGreaterThanOrEqual(0);
    expect(status.retryInMs).toBeLessThanOrEqual(BACKOFF.maxMs);
    expect(status.summary).toMatch(
      /^cannot sync with the Kubernetes API .*; no state from Kubernetes yet$/,
    );
    expect(source.snapshot()).toEqual({ policies: [], namespaces: [], endpoints: [] });
    expect(h.changes).toEqual([]);
    expect(h.logLines.some((l) => l.includes("cannot sync with the Kubernetes API"))).toBe(true);

    await server.start(server.port);
    await waitFor(() => h.changes.length > 0, "the first snapshot");
    expect(names(h.changes[0]?.endpoints ?? [])).toEqual(["prod/db-1", "prod/web-1"]);
    await waitFor(live(h), "the watches");
    expect(source.status().summary).toBe("watching the Kubernetes API");
  });

  it("keeps the last state in force while the API server is down, then catches up", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    await waitFor(() => h.changes.length > 0, "the first snapshot");
    const { server, source } = h;
    const before = source.snapshot();
    const changesBefore = h.changes.length;
    await server.stop();
    await waitFor(
      () => source.status().resources.every((r) => r.failures >= 2),
      "failed reconnects",
    );
    const status = source.status();
    expect(status.connected).toBe(false);
    expect(status.synced).toBe(true);
    expect(status.summary).toMatch(/retrying in \d+ s; state as of .* stays in force$/);
    expect(source.snapshot()).toEqual(before);
    expect(h.changes).toHaveLength(changesBefore);

    server.put("pods", pod("prod", "web-4", { podIP: "10.32.0.11" }));
    await server.start(server.port);
    await waitFor(() => names(source.endpoints()).includes("prod/web-4"), "change after outage");
    await waitFor(live(h), "the watches");
    expect(server.lists()).toBe(3); // resumed from the resourceVersion
    expect(source.status().lastError).toMatch(/ECONNREFUSED/);
  });

  it("skips a bad policy with a logged, counted error and keeps the rest", async () => {
    const h = await harness((server) => {
      seedCluster(server);
      server.put("networkpolicies", policy("prod", "bad", { podSelector: {}, ingres: [] }));
    });
    await waitFor(() => h.changes.length > 0, "the first snapshot");
    const { server, source } = h;
    expect(names(source.policies())).toEqual(["prod/deny-all"]);
    let status = source.status();
    expect(status.invalidObjects).toBe(1);
    expect(status.rejectedTotal).toBe(1);
    expect(status.skipped).toEqual([
      expect.objectContaining({ object: "NetworkPolicy prod/bad", field: "spec.ingres" }),
    ]);
    expect(status.summary).toContain("1 invalid object(s) skipped");
    const logged = h.logLines.filter((l) => l.includes("NetworkPolicy prod/bad skipped"));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain("spec.ingres: unknown field");

    await waitFor(live(h), "the watches");
    server.put(
      "networkpolicies",
      policy("prod", "bad2", { podSelector: {}, policyTypes: ["Sideways"] }),
    );
    server.put("networkpolicies", policy("prod", "bad", DENY_ALL));
    await waitFor(() => names(source.policies()).includes("prod/bad"), "the fixed policy");
    status = source.status();
    expect(status.invalidObjects).toBe(1);
    expect(status.rejectedTotal).toBe(2);
    expect(status.skipped[0]).toMatchObject({
      object: "NetworkPolicy prod/bad2",
      field: "spec.policyTypes[0]",
    });

    // A relist sees the same bad version again: not counted or logged twice.
    server.compact();
    await waitFor(
      () => source.status().resources.every((r) => r.relists === 1 && r.connected),
      "relists",
    );
    expect(source.status()).toMatchObject({ invalidObjects: 1, rejectedTotal: 2 });
    expect(h.logLines.filter((l) => l.includes("prod/bad2 skipped"))).toHaveLength(1);
    server.remove("networkpolicies", "prod/bad2");
    await waitFor(() => source.status().invalidObjects === 0, "the bad policy deleted");
  });

  it("keeps a policy's last good version in force when it is changed into a bad one", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server, source } = h;
    const before = source.policies().find((p) => p.name === "deny-all");
    expect(before).toBeDefined();
    server.put("networkpolicies", policy("prod", "deny-all", { podSelector: {}, ingres: [] }));
    await waitFor(() => source.status().invalidObjects === 1, "the bad version seen");
    expect(source.policies().find((p) => p.name === "deny-all")).toEqual(before);
    // A relist of the same bad version keeps the good one too.
    server.compact();
    await waitFor(
      () => source.status().resources.every((r) => r.relists === 1 && r.connected),
      "relists",
    );
    expect(source.policies().find((p) => p.name === "deny-all")).toEqual(before);
    server.remove("networkpolicies", "prod/deny-all");
    await waitFor(() => !names(source.policies()).includes("prod/deny-all"), "deleted");
  });

  it("stops: no more requests, and the snapshot stays readable", async () => {
    const h = await harness(seedCluster);
    await waitFor(live(h), "the watches");
    const { server, source } = h;
    source.stop();
    await waitFor(() => server.openWatches() === 0, "watches closed");
    const requests = server.requests.length;
    server.put("pods", pod("prod", "after-stop", { podIP: "10.32.0.12" }));
    await new Promise((resolve) => setTimeout(resolve, 3 * BACKOFF.initialMs));
    expect(server.requests).toHaveLength(requests);
    expect(names(source.endpoints())).toEqual(["prod/db-1", "prod/web-1"]);
    expect(source.status().resources.every((r) => r.state === "stopped")).toBe(true);
  });
});
