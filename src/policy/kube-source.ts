/**
 * Kubernetes as the source of policies and labels: lists and watches Namespaces, Pods and
 * NetworkPolicies through `@kubernetes/client-node` (in-cluster config or a kubeconfig) and keeps
 * the current `{ policies, namespaces, endpoints }`.
 *
 * Every pod feeds the peer sets with its labels and IPv4 addresses; pods whose `spec.nodeName` is
 * this node are `local`, the enforcement targets. Host-network pods (policies do not apply to them
 * and their address is the node's) and finished pods (their address may already be reused) are
 * left out.
 *
 * Each kind is a reflector of its own: list, then watch from the list's resourceVersion, keeping
 * the resourceVersion of every event and bookmark. A `410 Gone` (an ERROR event carrying a Status
 * with code 410, or HTTP 410 on the watch request) means the version has been compacted away: the
 * reflector relists and replaces its objects wholesale. Any other failure (refused, reset, 5xx, a
 * watch silent for too long) is retried with exponential back-off, and the last state stays in
 * force meanwhile; `status()` says what failed and when the next try is.
 *
 * Why not the library's informer (`makeInformer` / `ListWatch`): after any error other than 410 it
 * stops for good and leaves the retry to the caller, it reconnects at once after every clean close
 * (a server that closes each watch immediately makes it spin), it offers no timeout for a silent
 * connection, and its list goes through the generated typed client, which drops unknown fields
 * that the watch stream keeps, so the same object would be checked differently depending on how
 * it arrived. Here the library's `Watch` streams the events and a plain GET (with the kubeconfig's
 * agent, credentials and token refresh via `applyToHTTPSOptions`) does the lists, so both hand raw
 * JSON to the same checks, and the back-off and 410 handling are ours to test.
 *
 * A NetworkPolicy (or Namespace) that fails the model's checks is skipped, logged once per
 * version with every issue (object and field), and counted; the rest stays in force. An object
 * changed into a bad one keeps its last good version in force (dropping it could open every pod
 * it was the only policy for), until it is fixed or deleted.
 */

import * as http from "node:http";
import * as https from "node:https";
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { Logger } from "../util/log.js";
import type { PolicySourceStatus } from "./controller.js";
import {
  type Endpoint,
  type EndpointPort,
  type Issue,
  type Namespace,
  type NetworkPolicy,
  NETWORK_POLICY_API_VERSION,
  PROTOCOLS,
  type Protocol,
  checkNamespace,
  checkNetworkPolicy,
  formatIssue,
  parseIPv4,
} from "./model.js";
import type { Labels } from "./selector.js";

/** A pod as an endpoint; `local` when it runs on this node (an enforcement target). */
export interface KubeEndpoint extends Endpoint {
  readonly local: boolean;
  /** `spec.nodeName`; absent while the pod is unscheduled. */
  readonly nodeName?: string;
}

/** The state in force, each list sorted by namespace/name. */
export interface KubeSnapshot {
  readonly policies: readonly NetworkPolicy[];
  readonly namespaces: readonly Namespace[];
  readonly endpoints: readonly KubeEndpoint[];
}

export type KubeResource = "namespaces" | "pods" | "networkpolicies";

export interface KubeResourceStatus {
  readonly resource: KubeResource;
  readonly state: "idle" | "listing" | "watching" | "retrying" | "stopped";
  /** A watch stream is open. */
  readonly connected: boolean;
  /** Listed at least once: its objects are in force. */
  readonly synced: boolean;
  readonly resourceVersion?: string;
  /** When data from the API server was last applied (a list or a watch event), ISO 8601. */
  readonly lastSyncAt?: string;
  readonly lastError?: string;
  readonly lastErrorAt?: string;
  /** While retrying: milliseconds until the next attempt. */
  readonly retryInMs?: number;
  /** Failures since the last healthy watch. */
  readonly failures: number;
  /** Lists after the first (410 Gone). */
  readonly relists: number;
  /** Watches started after the first. */
  readonly reconnects: number;
  readonly objects: number;
}

export interface KubeSourceStatus {
  /** Every kind has a watch open. */
  readonly connected: boolean;
  /** Every kind has been listed: the snapshot is complete (if perhaps stale). */
  readonly synced: boolean;
  /** The oldest of the kinds' `lastSyncAt`, once all are synced. */
  readonly lastSyncAt?: string;
  /** The most recent failure, prefixed with its kind. */
  readonly lastError?: string;
  /** The soonest retry among the kinds that are retrying. */
  readonly retryInMs?: number;
  /** Objects skipped now for failing the checks, with their issues. */
  readonly invalidObjects: number;
  readonly skipped: readonly Issue[];
  /** Bad object versions seen since start (each logged once). */
  readonly rejectedTotal: number;
  /** One line for people, e.g. for `weft status`. */
  readonly summary: string;
  readonly resources: readonly KubeResourceStatus[];
}

export interface BackoffOptions {
  /** The first retry delay (default 1 s); it doubles with each failure. */
  readonly initialMs?: number;
  /** The longest delay (default 30 s). */
  readonly maxMs?: number;
  /** Up to this fraction is taken off each delay at random, so nodes spread out (default 0.2). */
  readonly jitter?: number;
  /** A watch open this long (or that delivered an event) was healthy: back-off restarts (10 s). */
  readonly resetAfterMs?: number;
}

export interface KubeSourceOptions {
  readonly kubeConfig: KubeConfig;
  /** This node's name, as in the pods' `spec.nodeName`. */
  readonly nodeName: string;
  /** The full snapshot after changes, once every kind has been listed (debounced). */
  readonly onChange?: (snapshot: KubeSnapshot) => void;
  readonly logger?: Logger;
  readonly backoff?: BackoffOptions;
  /** Default 100 ms. */
  readonly debounceMs?: number;
  /** Asked of the server per watch (default 300 s, plus up to as much again at random). */
  readonly watchTimeoutSeconds?: number;
  /** A watch that delivers nothing for this long is dropped (default: watch timeout + 60 s). */
  readonly watchIdleMs?: number;
  /** A list that takes longer fails (default 60 s). */
  readonly listTimeoutMs?: number;
}

/** A kubeconfig: the file at `path`, else `$KUBECONFIG`, `~/.kube/config` or in-cluster. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path !== undefined) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

/** The delay before retry number `failures` (1 = the first retry). */
export function backoffDelay(
  failures: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const { initialMs, maxMs, jitter } = { ...BACKOFF_DEFAULTS, ...options };
  const base = Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (1 - jitter * random()));
}

const BACKOFF_DEFAULTS = { initialMs: 1000, maxMs: 30_000, jitter: 0.2, resetAfterMs: 10_000 };

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function metadataOf(obj: unknown): Obj {
  return isObj(obj) && isObj(obj.metadata) ? obj.metadata : {};
}

function stringField(o: Obj, key: string): string | undefined {
  const v = o[key];
  return typeof v === "string" && v !== "" ? v : undefined;
}

/** `namespace/name` (or `name` for cluster-scoped objects), undefined without a name. */
function objectKey(obj: unknown): string | undefined {
  const m = metadataOf(obj);
  const name = stringField(m, "name");
  if (name === undefined) return undefined;
  const namespace = stringField(m, "namespace");
  return namespace === undefined ? name : `${namespace}/${name}`;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A watch ERROR event with a 410 Status; HTTP 410 comes from `Watch` with `statusCode` 410. */
class GoneError extends Error {
  readonly statusCode = 410;
}

function isGone(err: unknown): boolean {
  return isObj(err) && (err.statusCode === 410 || err.code === 410);
}

/** Converts one object: a value, or the issues that keep it out. */
type Convert<T> = (obj: unknown) => { value?: T; issues: readonly Issue[] };

function convertPolicy(obj: unknown): { value?: NetworkPolicy; issues: readonly Issue[] } {
  // List items carry no kind or apiVersion; watch objects do.
  return checkNetworkPolicy(
    isObj(obj) ? { ...obj, apiVersion: NETWORK_POLICY_API_VERSION, kind: "NetworkPolicy" } : obj,
  );
}

function convertNamespace(obj: unknown): { value?: Namespace; issues: readonly Issue[] } {
  return checkNamespace(isObj(obj) ? { ...obj, apiVersion: "v1", kind: "Namespace" } : obj);
}

function podLabels(value: unknown): Labels {
  if (!isObj(value)) return {};
  return Object.fromEntries(
    Object.entries(value).filter((e): e is [string, string] => typeof e[1] === "string"),
  );
}

function podIPs(status: Obj): string[] {
  const listed = Array.isArray(status.podIPs)
    ? status.podIPs.map((entry) => (isObj(entry) ? entry.ip : undefined))
    : [];
  const all = listed.length > 0 ? listed : [status.podIP];
  const v4 = all.filter(
    (ip): ip is string => typeof ip === "string" && parseIPv4(ip) !== undefined,
  );
  return [...new Set(v4)];
}

function podPorts(spec: Obj): EndpointPort[] {
  const ports: EndpointPort[] = [];
  for (const container of Array.isArray(spec.containers) ? spec.containers : []) {
    if (!isObj(container) || !Array.isArray(container.ports)) continue;
    for (const p of container.ports) {
      // Unnamed ports are left out: endpoint ports only serve to resolve named policy ports.
      if (!isObj(p) || typeof p.name !== "string" || typeof p.containerPort !== "number") continue;
      const protocol = (PROTOCOLS as readonly unknown[]).includes(p.protocol)
        ? (p.protocol as Protocol)
        : "TCP";
      ports.push({ name: p.name, port: p.containerPort, protocol });
    }
  }
  return ports;
}

/** A pod as an endpoint; undefined for pods that policies do not concern (see the top). */
export function podEndpoint(obj: unknown, nodeName: string): KubeEndpoint | undefined {
  if (!isObj(obj)) return undefined;
  const m = metadataOf(obj);
  const name = stringField(m, "name");
  const namespace = stringField(m, "namespace");
  if (name === undefined || namespace === undefined) return undefined;
  const spec = isObj(obj.spec) ? obj.spec : {};
  const status = isObj(obj.status) ? obj.status : {};
  if (spec.hostNetwork === true) return undefined;
  if (status.phase === "Succeeded" || status.phase === "Failed") return undefined;
  const podNode = stringField(spec, "nodeName");
  return {
    namespace,
    name,
    labels: podLabels(m.labels),
    ips: podIPs(status),
    ports: podPorts(spec),
    local: podNode === nodeName,
    ...(podNode !== undefined ? { nodeName: podNode } : {}),
  };
}

interface ResourceDef {
  readonly resource: KubeResource;
  readonly path: string;
}

const RESOURCE_DEFS: Record<KubeResource, ResourceDef> = {
  namespaces: { resource: "namespaces", path: "/api/v1/namespaces" },
  pods: { resource: "pods", path: "/api/v1/pods" },
  networkpolicies: {
    resource: "networkpolicies",
    path: "/apis/networking.k8s.io/v1/networkpolicies",
  },
};

interface ReflectorContext {
  readonly kubeConfig: KubeConfig;
  readonly watch: Watch;
  readonly logger: Logger;
  readonly backoff: Required<BackoffOptions>;
  readonly watchTimeoutSeconds: number;
  readonly watchIdleMs: number;
  readonly listTimeoutMs: number;
  /** The reflector's objects changed. */
  changed(): void;
  /** A bad object version was seen for the first time. */
  rejected(): void;
}

/** GETs `path` from the current cluster and parses the JSON body. */
async function getJson(kc: KubeConfig, path: string, timeoutMs: number): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error("the kubeconfig has no current cluster");
  const options: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(options);
  const url = new URL(cluster.server.replace(/\/+$/, "") + path);
  const get = url.protocol === "https:" ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(url, { ...options, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        if (res.statusCode === 200) {
          if (body !== undefined) resolve(body);
          else reject(new Error(`GET ${path}: the answer is not JSON`));
          return;
        }
        const detail = isObj(body) && typeof body.message === "string" ? `: ${body.message}` : "";
        const status = `${res.statusCode ?? "?"} ${res.statusMessage ?? ""}`.trim();
        reject(new Error(`GET ${path}: HTTP ${status}${detail}`));
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}

/** List-then-watch of one kind, converting objects with `convert`. */
class Reflector<T> {
  private objects = new Map<string, T>();
  /** Skipped objects by key, with the resourceVersion that was logged. */
  private bad = new Map<string, { version: string | undefined; issues: readonly Issue[] }>();
  private resourceVersion: string | undefined;
  private state: KubeResourceStatus["state"] = "idle";
  private connected = false;
  private synced = false;
  private lastSyncAt: number | undefined;
  private lastError: string | undefined;
  private lastErrorAt: number | undefined;
  private retryAt: number | undefined;
  private failures = 0;
  private lists = 0;
  private watches = 0;
  /** Bumped whenever an attempt ends, so callbacks of an abandoned attempt do nothing. */
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private abortWatch: (() => void) | undefined;
  private readonly logger: Logger;

  constructor(
    readonly def: ResourceDef,
    private readonly convert: Convert<T>,
    private readonly ctx: ReflectorContext,
  ) {
    this.logger = ctx.logger.child({ resource: def.resource });
  }

  values(): T[] {
    return [...this.objects.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
  }

  issues(): Issue[] {
    return [...this.bad.values()].flatMap((b) => b.issues);
  }

  get invalidObjects(): number {
    return this.bad.size;
  }

  get isSynced(): boolean {
    return this.synced;
  }

  start(): void {
    if (this.state !== "idle" && this.state !== "stopped") return;
    this.schedule(0);
  }

  stop(): void {
    this.generation++;
    this.state = "stopped";
    this.connected = false;
    this.retryAt = undefined;
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    this.abortWatch?.();
    this.abortWatch = undefined;
  }

  status(now: number): KubeResourceStatus {
    const iso = (t: number | undefined) =>
      t === undefined ? undefined : new Date(t).toISOString();
    const lastSyncAt = iso(this.lastSyncAt);
    const lastErrorAt = iso(this.lastErrorAt);
    return {
      resource: this.def.resource,
      state: this.state,
      connected: this.connected,
      synced: this.synced,
      ...(this.resourceVersion !== undefined ? { resourceVersion: this.resourceVersion } : {}),
      ...(lastSyncAt !== undefined ? { lastSyncAt } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(lastErrorAt !== undefined ? { lastErrorAt } : {}),
      ...(this.state === "retrying" && this.retryAt !== undefined
        ? { retryInMs: Math.max(0, this.retryAt - now) }
        : {}),
      failures: this.failures,
      relists: Math.max(0, this.lists - 1),
      reconnects: Math.max(0, this.watches - 1),
      objects: this.objects.size,
    };
  }

  private schedule(delayMs: number): void {
    this.state = "retrying";
    this.retryAt = Date.now() + delayMs;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.attempt(), delayMs);
  }

  private async attempt(): Promise<void> {
    const generation = ++this.generation;
    this.retryAt = undefined;
    if (this.resourceVersion === undefined) {
      this.state = "listing";
      let list: unknown;
      try {
        list = await getJson(this.ctx.kubeConfig, this.def.path, this.ctx.listTimeoutMs);
      } catch (err) {
        if (generation === this.generation) this.failed(err);
        return;
      }
      if (generation !== this.generation) return;
      const items = isObj(list) && Array.isArray(list.items) ? list.items : undefined;
      const version = stringField(metadataOf(list), "resourceVersion");
      if (items === undefined || version === undefined) {
        this.failed(new Error(`GET ${this.def.path}: not a list with a resourceVersion`));
        return;
      }
      this.replace(items);
      this.resourceVersion = version;
      this.lists++;
      this.synced = true;
      this.lastSyncAt = Date.now();
      this.ctx.changed();
    }
    await this.watch(generation);
  }

  private async watch(generation: number): Promise<void> {
    this.state = "watching";
    this.watches++;
    let openedAt = Number.POSITIVE_INFINITY; // until the server answers
    let sawEvent = false;
    let controller: AbortController | undefined;
    const end = (err: unknown): void => {
      if (generation !== this.generation) return;
      this.generation++;
      clearTimeout(this.idleTimer);
      controller?.abort();
      this.abortWatch = undefined;
      this.connected = false;
      const healthy = sawEvent || Date.now() - openedAt >= this.ctx.backoff.resetAfterMs;
      this.watchEnded(err, healthy);
    };
    const idle = (): void => {
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(
        () => end(new Error(`watch silent for ${this.ctx.watchIdleMs} ms`)),
        this.ctx.watchIdleMs,
      );
    };
    this.abortWatch = () => controller?.abort();
    idle();
    const timeoutSeconds =
      this.ctx.watchTimeoutSeconds + Math.floor(Math.random() * this.ctx.watchTimeoutSeconds);
    const onEvent = (type: string, object: unknown): void => {
      if (generation !== this.generation) return;
      idle();
      if (type === "ERROR") {
        const message = isObj(object) && typeof object.message === "string" ? object.message : "";
        end(
          isGone(object)
            ? new GoneError(`watch: 410 Gone ${message}`.trim())
            : new Error(`watch: ERROR event ${message || JSON.stringify(object)}`),
        );
        return;
      }
      if (!sawEvent) {
        sawEvent = true;
        this.failures = 0;
      }
      this.event(type, object);
    };
    try {
      controller = await this.ctx.watch.watch(
        this.def.path,
        { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
        onEvent,
        end,
      );
    } catch (err) {
      end(err);
      return;
    }
    if (generation !== this.generation) {
      controller.abort();
      return;
    }
    openedAt = Date.now();
    this.connected = true;
  }

  private watchEnded(err: unknown, healthy: boolean): void {
    if (healthy) this.failures = 0;
    if (isGone(err)) {
      // The resourceVersion was compacted away: relist, at once unless this keeps happening.
      this.resourceVersion = undefined;
      this.failures++;
      this.logger.info("resourceVersion expired; relisting", { error: errorMessage(err) });
      this.schedule(this.failures === 1 ? 0 : backoffDelay(this.failures - 1, this.ctx.backoff));
      return;
    }
    if ((err === null || err === undefined) && healthy) {
      this.schedule(0); // the server's routine close of a watch
      return;
    }
    this.failed(err ?? new Error("watch closed at once"));
  }

  private failed(err: unknown): void {
    this.failures++;
    const delay = backoffDelay(this.failures, this.ctx.backoff);
    this.lastError = errorMessage(err);
    this.lastErrorAt = Date.now();
    this.logger.warn("cannot sync with the Kubernetes API; last state stays in force", {
      error: this.lastError,
      failures: this.failures,
      retryInMs: delay,
    });
    this.schedule(delay);
  }

  private event(type: string, object: unknown): void {
    const version = stringField(metadataOf(object), "resourceVersion");
    if (version !== undefined) this.resourceVersion = version;
    if (type === "BOOKMARK") return;
    const key = objectKey(object);
    if (key === undefined) {
      this.logger.warn("watch event without an object name; ignored", { type });
      return;
    }
    if (type === "ADDED" || type === "MODIFIED") this.put(key, object);
    else if (type === "DELETED") {
      this.objects.delete(key);
      this.bad.delete(key);
    } else {
      this.logger.warn("unknown watch event type; ignored", { type });
      return;
    }
    this.lastSyncAt = Date.now();
    this.ctx.changed();
  }

  private replace(items: readonly unknown[]): void {
    const previousBad = this.bad;
    const previousObjects = this.objects;
    this.objects = new Map();
    this.bad = new Map();
    for (const item of items) {
      const key = objectKey(item);
      if (key === undefined) continue;
      const earlier = previousBad.get(key);
      if (earlier !== undefined) this.bad.set(key, earlier);
      this.put(key, item, previousObjects.get(key));
    }
  }

  private put(key: string, object: unknown, lastGood: T | undefined = this.objects.get(key)): void {
    const { value, issues } = this.convert(object);
    if (value !== undefined) {
      this.objects.set(key, value);
      this.bad.delete(key);
      return;
    }
    if (issues.length === 0) {
      this.objects.delete(key);
      this.bad.delete(key); // not a concern of policies (e.g. a host-network pod)
      return;
    }
    if (lastGood !== undefined) this.objects.set(key, lastGood);
    else this.objects.delete(key);
    const version = stringField(metadataOf(object), "resourceVersion");
    const earlier = this.bad.get(key);
    this.bad.set(key, { version, issues });
    if (earlier !== undefined && earlier.version === version) return;
    this.ctx.rejected();
    this.logger.warn(`${issues[0]?.object ?? key} skipped; the rest stays in force`, {
      issues: issues.map(formatIssue).join("; "),
    });
  }
}

/**
 * The Kubernetes source: `start()` begins listing and watching; `onChange` then receives the
 * full snapshot after changes, once every kind has been listed. Until then the snapshot is empty.
 */
export class KubeSource {
  private readonly policyReflector: Reflector<NetworkPolicy>;
  private readonly namespaceReflector: Reflector<Namespace>;
  private readonly podReflector: Reflector<KubeEndpoint>;
  private readonly reflectors: readonly Reflector<unknown>[];
  private readonly debounceMs: number;
  private readonly onChange: ((snapshot: KubeSnapshot) => void) | undefined;
  private readonly logger: Logger;
  private rejectedTotal = 0;
  private debounce: NodeJS.Timeout | undefined;

  constructor(options: KubeSourceOptions) {
    this.logger = (options.logger ?? new Logger()).child({ component: "kube-source" });
    this.debounceMs = options.debounceMs ?? 100;
    this.onChange = options.onChange;
    const watchTimeoutSeconds = options.watchTimeoutSeconds ?? 300;
    const ctx: ReflectorContext = {
      kubeConfig: options.kubeConfig,
      watch: new Watch(options.kubeConfig),
      logger: this.logger,
      backoff: { ...BACKOFF_DEFAULTS, ...options.backoff },
      watchTimeoutSeconds,
      watchIdleMs: options.watchIdleMs ?? (watchTimeoutSeconds * 2 + 60) * 1000,
      listTimeoutMs: options.listTimeoutMs ?? 60_000,
      changed: () => this.changed(),
      rejected: () => this.rejectedTotal++,
    };
    const nodeName = options.nodeName;
    this.namespaceReflector = new Reflector(RESOURCE_DEFS.namespaces, convertNamespace, ctx);
    this.podReflector = new Reflector(
      RESOURCE_DEFS.pods,
      (obj) => {
        const value = podEndpoint(obj, nodeName);
        return value === undefined ? { issues: [] } : { value, issues: [] };
      },
      ctx,
    );
    this.policyReflector = new Reflector(RESOURCE_DEFS.networkpolicies, convertPolicy, ctx);
    this.reflectors = [this.namespaceReflector, this.podReflector, this.policyReflector];
  }

  start(): void {
    for (const r of this.reflectors) r.start();
  }

  /** Closes the watches and cancels retries; the snapshot stays readable. */
  stop(): void {
    clearTimeout(this.debounce);
    this.debounce = undefined;
    for (const r of this.reflectors) r.stop();
  }

  policies(): readonly NetworkPolicy[] {
    return this.policyReflector.values();
  }

  namespaces(): readonly Namespace[] {
    return this.namespaceReflector.values();
  }

  endpoints(): readonly KubeEndpoint[] {
    return this.podReflector.values();
  }

  snapshot(): KubeSnapshot {
    return {
      policies: this.policies(),
      namespaces: this.namespaces(),
      endpoints: this.endpoints(),
    };
  }

  status(now = Date.now()): KubeSourceStatus {
    const resources = this.reflectors.map((r) => r.status(now));
    const connected = resources.every((r) => r.connected);
    const synced = resources.every((r) => r.synced);
    const syncTimes = resources.map((r) => r.lastSyncAt).filter((t) => t !== undefined);
    const lastSyncAt = synced ? syncTimes.sort()[0] : undefined;
    const latestError = resources
      .filter((r) => r.lastError !== undefined)
      .sort((a, b) => ((a.lastErrorAt ?? "") < (b.lastErrorAt ?? "") ? 1 : -1))[0];
    const lastError =
      latestError === undefined ? undefined : `${latestError.resource}: ${latestError.lastError}`;
    const retries = resources.map((r) => r.retryInMs).filter((t) => t !== undefined);
    const retryInMs = retries.length > 0 ? Math.min(...retries) : undefined;
    const skipped = this.reflectors.flatMap((r) => r.issues());
    const invalidObjects = this.reflectors.reduce((n, r) => n + r.invalidObjects, 0);
    return {
      connected,
      synced,
      ...(lastSyncAt !== undefined ? { lastSyncAt } : {}),
      ...(lastError !== undefined ? { lastError } : {}),
      ...(retryInMs !== undefined ? { retryInMs } : {}),
      invalidObjects,
      skipped,
      rejectedTotal: this.rejectedTotal,
      summary: summarize(connected, synced, lastSyncAt, lastError, retryInMs, invalidObjects),
      resources,
    };
  }

  private changed(): void {
    if (this.onChange === undefined || this.debounce !== undefined) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      if (!this.reflectors.every((r) => r.isSynced)) return; // the last initial list calls again
      try {
        this.onChange?.(this.snapshot());
      } catch (err) {
        this.logger.error("onChange failed", { error: errorMessage(err) });
      }
    }, this.debounceMs);
  }
}

/**
 * The source's health for `weft status policy`: healthy while every kind is listed and watched.
 * The error shown is the latest of the kinds that are not watching now after failing; once a kind
 * is back, its past failure (still in `status().lastError`) no longer counts.
 */
export function kubeSourceHealth(s: KubeSourceStatus): PolicySourceStatus {
  const standing = s.resources
    .filter((r) => !r.connected && r.failures > 0 && r.lastError !== undefined)
    .sort((a, b) => ((a.lastErrorAt ?? "") < (b.lastErrorAt ?? "") ? 1 : -1))[0];
  return {
    source: "kubernetes",
    healthy: s.connected && s.synced,
    ...(standing !== undefined ? { error: `${standing.resource}: ${standing.lastError}` } : {}),
    ...(s.lastSyncAt !== undefined ? { lastSync: s.lastSyncAt } : {}),
  };
}

function summarize(
  connected: boolean,
  synced: boolean,
  lastSyncAt: string | undefined,
  lastError: string | undefined,
  retryInMs: number | undefined,
  invalidObjects: number,
): string {
  const parts: string[] = [];
  if (connected) parts.push("watching the Kubernetes API");
  else if (lastError !== undefined)
    parts.push(`cannot sync with the Kubernetes API (${lastError})`);
  else parts.push("connecting to the Kubernetes API");
  if (!connected && retryInMs !== undefined) {
    parts.push(`retrying in ${Math.ceil(retryInMs / 1000)} s`);
  }
  if (!connected) {
    parts.push(
      synced && lastSyncAt !== undefined
        ? `state as of ${lastSyncAt} stays in force`
        : "no state from Kubernetes yet",
    );
  }
  if (invalidObjects > 0) parts.push(`${invalidObjects} invalid object(s) skipped`);
  return parts.join("; ");
}
