/**
 * The network-policy control plane of one peer: it gathers what the policies need — the
 * policies and namespace labels (from `--policy-dir` or Kubernetes), this host's endpoints
 * (registered by `weft attach` and `weft label`), and every other peer's (the endpoint
 * directory, or Kubernetes' pods) — and hands one consistent picture to the two enforcers:
 *
 * - the userspace enforcer, on the frames of weft's switch, whose targets are the endpoints
 *   behind TAP ports (`datapath: "switch"`);
 * - the kernel backend (Weave-NPC's iptables and ipsets) for endpoints on a kernel bridge
 *   (`datapath: "kernel"`), whose frames may never reach Node (fast datapath).
 *
 * The kernel path's drops, logged to NFLOG group 86 and handed in by `recordKernelDenied`, are
 * named against the same picture (nflog-denials.ts); status shows both paths' denied flows.
 *
 * Changes are coalesced (a short debounce), so a burst of label changes or a reload costs one
 * recompute. The local registry is persisted under the data directory, so that a restart keeps
 * every endpoint's labels.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomically } from "../util/atomic-file.js";
import type { Logger } from "../util/log.js";
import type { EndpointDirectory } from "./endpoint-directory.js";
import { checkEndpoint } from "./endpoint-identity.js";
import type { PolicyEnforcer } from "./enforcer.js";
import { endpointKey, type EnforcedEndpoint } from "./endpoints.js";
import { compilePolicies } from "./matcher.js";
import { policyKey, type Endpoint, type Namespace, type NetworkPolicy } from "./model.js";
import { KernelDenials } from "./nflog-denials.js";

/** Which enforcer judges an endpoint's traffic. */
export type EndpointDatapath = "switch" | "kernel";

/** An endpoint of this host, as registered through the router API. */
export interface LocalEndpoint {
  /** The registry key: `netns:<path>` for namespaces, as IPAM's ids. */
  readonly id: string;
  readonly endpoint: Endpoint;
  readonly datapath: EndpointDatapath;
}

/** What a policy source currently says (the last good state, while it fails). */
export interface PolicySourceState {
  readonly policies: readonly NetworkPolicy[];
  readonly namespaces: readonly Namespace[];
  /** Endpoints the source knows itself (Kubernetes pods); local ones are enforcement targets. */
  readonly endpoints?: readonly (Endpoint & { readonly local?: boolean })[];
}

export interface PolicySourceStatus {
  /** `policy-dir /etc/weft/policies`, `kubernetes https://…`, or `none`. */
  readonly source: string;
  readonly healthy: boolean;
  /** The last error, while it stands. */
  readonly error?: string;
  readonly lastSync?: string;
}

/** Weave-NPC's iptables and ipsets, or anything else that enforces on the kernel path. */
export interface KernelPolicyBackend {
  apply(input: {
    policies: readonly NetworkPolicy[];
    namespaces: readonly Namespace[];
    endpoints: readonly Endpoint[];
  }): Promise<void>;
  /** Removes everything it made (on stop). */
  cleanup?(): Promise<void>;
  /** New flows the kernel admitted per policy (`namespace/name`), since start. */
  allowedCounts?(): Promise<ReadonlyMap<string, number>>;
}

export interface PolicyStatus {
  readonly source: PolicySourceStatus;
  /**
   * How many times a change (policies, labels, endpoints here or elsewhere) has been handed to
   * the enforcers, and when last: a change shows up here once it judges new flows.
   */
  readonly generation: number;
  readonly appliedAt?: string;
  /** Namespace labels in force (from `kind: Namespace` manifests or Kubernetes). */
  readonly namespaces: readonly {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
  }[];
  readonly policies: {
    readonly name: string;
    /** The local endpoints it selects, `namespace/name`. */
    readonly selects: readonly string[];
    readonly allowed: number;
    readonly denied: number;
  }[];
  readonly endpoints: {
    readonly id: string;
    readonly name: string;
    readonly datapath: EndpointDatapath;
    readonly ips: readonly string[];
    readonly labels: Readonly<Record<string, string>>;
  }[];
  readonly remoteEndpoints: number;
  readonly kernel: { readonly applied: number; readonly error?: string } | undefined;
  /** Both paths' last denied flows, oldest first. */
  readonly lastDenied: readonly {
    readonly at: string;
    /** Which enforcer dropped it: the userspace switch, or iptables on the kernel bridge. */
    readonly path: EndpointDatapath;
    readonly direction: string;
    readonly namespace: string;
    readonly endpoint: string;
    readonly policies: readonly string[];
    readonly from: string;
    readonly to: string;
    readonly protocol: string;
    readonly port?: number;
  }[];
  readonly counters: Readonly<Record<string, number>>;
}

export interface PolicyControllerOptions {
  enforcer: PolicyEnforcer;
  directory: EndpointDirectory;
  /** Sends our endpoints to the mesh (gossip to every neighbour). */
  publish: (endpoints: readonly Endpoint[]) => void;
  /** The registry file (JSON); absent: nothing persisted. */
  storePath?: string;
  kernel?: KernelPolicyBackend;
  log: Logger;
  debounceMs?: number;
  /** Where the policies come from, for status. */
  sourceStatus: () => PolicySourceStatus;
  /**
   * The source's own local endpoints (Kubernetes' pods on this node) sit behind the switch's
   * ports, so the userspace enforcer judges them; false in bridge mode, where pods are on the
   * kernel bridge and iptables does.
   */
  sourceLocalsOnSwitch?: boolean;
}

const REGISTRY_VERSION = 1;
const MAX_LOCAL_ENDPOINTS = 4096;
/** Denied flows in status, both paths together (each path keeps as many). */
const MAX_LAST_DENIED = 256;

export class PolicyError extends Error {}

export class PolicyController {
  readonly #opts: PolicyControllerOptions;
  readonly #locals = new Map<string, LocalEndpoint>();
  #source: PolicySourceState = { policies: [], namespaces: [] };
  #timer: ReturnType<typeof setTimeout> | undefined;
  #kernelApplied = 0;
  #kernelError: string | undefined;
  #kernelBusy: Promise<void> = Promise.resolve();
  #enforced = new Map<string, EnforcedEndpoint>();
  readonly #kernelDenials: KernelDenials;
  /** The endpoints of this host, whichever path enforces them (for status). */
  #hereKeys = new Set<string>();
  #policiesChanged = true;
  /** The kernel path's allowed counts as last read (see `refreshKernelCounts`). */
  #kernelAllowed: ReadonlyMap<string, number> = new Map();
  /** Recomputes handed to the enforcers so far, and when the last one was: for status. */
  #generation = 0;
  #appliedAt: Date | undefined;
  #stopped = false;

  constructor(opts: PolicyControllerOptions) {
    this.#opts = opts;
    const log = opts.log;
    this.#kernelDenials = new KernelDenials({
      log: { info: (msg, fields) => log.info(msg, { ...fields, path: "kernel" }) },
    });
    this.#load();
  }

  /** Pushes the restored registry out (call once the mesh is up). */
  start(): void {
    this.#opts.publish(this.#localEndpoints());
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /**
   * Reads the kernel path's allowed counts for status (iptables counters: too slow to read per
   * status request, so the caller refreshes them now and then). In turn with applies.
   */
  refreshKernelCounts(): Promise<void> {
    const read = this.#opts.kernel?.allowedCounts;
    if (read === undefined) return Promise.resolve();
    this.#kernelBusy = this.#kernelBusy.then(async () => {
      try {
        this.#kernelAllowed = await read.call(this.#opts.kernel);
      } catch (err) {
        this.#opts.log.warn("cannot read the kernel path's counters", {
          error: (err as Error).message,
        });
      }
    });
    return this.#kernelBusy;
  }

  /** Waits for the kernel backend to finish what it is doing (tests, shutdown). */
  settled(): Promise<void> {
    return this.#kernelBusy;
  }

  setSource(state: PolicySourceState): void {
    if (state.policies !== this.#source.policies || state.namespaces !== this.#source.namespaces) {
      this.#policiesChanged = true;
    }
    this.#source = state;
    this.#schedule();
  }

  /** Another peer's endpoints changed (directory gossip). */
  directoryChanged(): void {
    this.#schedule();
  }

  get(id: string): LocalEndpoint | undefined {
    return this.#locals.get(id);
  }

  list(): LocalEndpoint[] {
    return [...this.#locals.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Registers or replaces an endpoint of this host; throws `PolicyError` on bad input. */
  put(id: string, body: unknown): LocalEndpoint {
    const local = this.#validate(id, body);
    this.#locals.set(id, local);
    this.#changedLocal();
    return local;
  }

  #validate(id: string, body: unknown): LocalEndpoint {
    if (id.length === 0 || id.length > 4096) throw new PolicyError("bad endpoint id");
    const b = body as { datapath?: unknown } | null;
    const datapath = b?.datapath ?? "switch";
    if (datapath !== "switch" && datapath !== "kernel") {
      throw new PolicyError(
        `datapath must be "switch" or "kernel", not ${JSON.stringify(datapath)}`,
      );
    }
    let endpoint: Endpoint;
    try {
      endpoint = checkEndpoint(body);
    } catch (err) {
      throw new PolicyError((err as Error).message);
    }
    const clash = [...this.#locals.values()].find(
      (l) => l.id !== id && endpointKey(l.endpoint) === endpointKey(endpoint),
    );
    if (clash !== undefined) {
      throw new PolicyError(`endpoint ${endpointKey(endpoint)} is already ${clash.id}`);
    }
    if (!this.#locals.has(id) && this.#locals.size >= MAX_LOCAL_ENDPOINTS) {
      throw new PolicyError(`more than ${MAX_LOCAL_ENDPOINTS} endpoints`);
    }
    return { id, endpoint, datapath };
  }

  remove(id: string): boolean {
    if (!this.#locals.delete(id)) return false;
    this.#changedLocal();
    return true;
  }

  /** Drops `netns:` endpoints whose namespace file is gone (their addresses went with them). */
  sweep(): void {
    let changed = false;
    for (const id of [...this.#locals.keys()]) {
      if (id.startsWith("netns:") && !existsSync(id.slice("netns:".length))) {
        this.#locals.delete(id);
        this.#opts.log.info("policy endpoint is gone", { id });
        changed = true;
      }
    }
    if (changed) this.#changedLocal();
  }

  /**
   * A packet iptables dropped on the kernel path (the IPv4 packet, as NFLOG logged it): counted
   * against the policies that deny it here, and recorded as a denied flow.
   */
  recordKernelDenied(packet: Uint8Array): void {
    this.#kernelDenials.record(packet);
  }

  status(): PolicyStatus {
    const stats = this.#opts.enforcer.stats();
    const kernelDenied = this.#kernelDenials.deniedPerPolicy();
    const kernelStats = this.#kernelDenials.stats();
    const matcher = compilePolicies({
      policies: this.#source.policies,
      namespaces: this.#source.namespaces,
    });
    const locals = [...this.#enforced.values()].filter((e) => this.#hereKeys.has(endpointKey(e)));
    const policies = [...this.#source.policies]
      .map((p) => policyKey(p))
      .sort()
      .map((name) => {
        const selects = locals
          .filter((e) =>
            (["ingress", "egress"] as const).some((d) =>
              matcher.selectingPolicies(e, d).includes(name),
            ),
          )
          .map((e) => endpointKey(e))
          .sort();
        const counts = stats.perPolicy.get(name);
        const denied = (counts?.denied ?? 0) + (kernelDenied.get(name) ?? 0);
        const allowed = (counts?.allowed ?? 0) + (this.#kernelAllowed.get(name) ?? 0);
        return { name, selects, allowed, denied };
      });
    return {
      source: this.#opts.sourceStatus(),
      generation: this.#generation,
      ...(this.#appliedAt !== undefined ? { appliedAt: this.#appliedAt.toISOString() } : {}),
      namespaces: this.#source.namespaces.map((n) => ({ name: n.name, labels: n.labels })),
      policies,
      endpoints: this.list().map((l) => ({
        id: l.id,
        name: endpointKey(l.endpoint),
        datapath: l.datapath,
        ips: l.endpoint.ips,
        labels: l.endpoint.labels,
      })),
      remoteEndpoints: this.#opts.directory.remoteEndpoints().length,
      kernel:
        this.#opts.kernel === undefined
          ? undefined
          : {
              applied: this.#kernelApplied,
              ...(this.#kernelError !== undefined ? { error: this.#kernelError } : {}),
            },
      lastDenied: [
        ...this.#opts.enforcer.lastDenied().map((d) => ({ ...d, path: "switch" as const })),
        ...this.#kernelDenials.lastDenied().map((d) => ({ ...d, path: "kernel" as const })),
      ]
        .sort((a, b) => a.time - b.time)
        .slice(-MAX_LAST_DENIED)
        .map((d) => ({
          at: new Date(d.time).toISOString(),
          path: d.path,
          direction: d.direction,
          namespace: d.namespace,
          endpoint: d.endpoint,
          policies: d.policies,
          from: d.from,
          to: d.to,
          protocol: d.protocol,
          ...(d.port !== undefined ? { port: d.port } : {}),
        })),
      counters: {
        evaluated: stats.evaluated,
        allowed: stats.allowed,
        denied: stats.deniedTotal,
        passedEstablished: stats.passedEstablished,
        conntrackEntries: stats.conntrack.entries,
        conntrackEvicted: stats.conntrack.evicted,
        denyLogSuppressed: stats.denyLog.suppressed,
        kernelLogged: kernelStats.received,
        kernelDenied: kernelStats.recorded,
        kernelUnattributed: kernelStats.unattributed + kernelStats.unreadable,
        kernelDenyLogSuppressed: kernelStats.denyLog.suppressed,
      },
    };
  }

  #localEndpoints(): Endpoint[] {
    return this.list().map((l) => l.endpoint);
  }

  #changedLocal(): void {
    this.#save();
    this.#opts.publish(this.#localEndpoints());
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#recompute(), this.#opts.debounceMs ?? 50);
    this.#timer.unref();
  }

  /** The whole picture, to both enforcers. */
  #recompute(): void {
    const { enforcer } = this.#opts;
    // Setting policies makes the enforcer compile again; a label or endpoint change needs none.
    if (this.#policiesChanged) {
      this.#policiesChanged = false;
      enforcer.setPolicies(this.#source.policies, this.#source.namespaces);
      this.#kernelDenials.setPolicies(this.#source.policies, this.#source.namespaces);
    }
    const next = new Map<string, EnforcedEndpoint>();
    // The same endpoints as the kernel path sees them: local where iptables judges them.
    const onKernel = new Map<string, EnforcedEndpoint>();
    const add = (ep: Endpoint, path: EndpointDatapath | undefined): void => {
      const key = endpointKey(ep);
      // Ours first: what this host registered wins over what others say of the same name.
      if (next.has(key)) return;
      next.set(key, { ...ep, local: path === "switch" });
      onKernel.set(key, { ...ep, local: path === "kernel" });
    };
    for (const l of this.#locals.values()) add(l.endpoint, l.datapath);
    const sourcePath = this.#opts.sourceLocalsOnSwitch === true ? "switch" : "kernel";
    for (const ep of this.#source.endpoints ?? []) {
      add(ep, ep.local === true ? sourcePath : undefined);
    }
    for (const ep of this.#opts.directory.remoteEndpoints()) add(ep, undefined);
    enforcer.setEndpoints([...next.values()]);
    this.#kernelDenials.setEndpoints([...onKernel.values()]);
    this.#enforced = next;
    this.#hereKeys = new Set([
      ...[...this.#locals.values()].map((l) => endpointKey(l.endpoint)),
      ...(this.#source.endpoints ?? []).filter((e) => e.local === true).map(endpointKey),
    ]);
    this.#applyKernel([...next.values()]);
    this.#generation++;
    this.#appliedAt = new Date();
  }

  #applyKernel(endpoints: Endpoint[]): void {
    const kernel = this.#opts.kernel;
    if (kernel === undefined) return;
    const input = {
      policies: this.#source.policies,
      namespaces: this.#source.namespaces,
      endpoints,
    };
    // One apply at a time, in order; a failure is reported and the next change retries.
    this.#kernelBusy = this.#kernelBusy.then(async () => {
      try {
        await kernel.apply(input);
        this.#kernelApplied++;
        this.#kernelError = undefined;
      } catch (err) {
        this.#kernelError = (err as Error).message;
        this.#opts.log.error("kernel policy not applied", { error: this.#kernelError });
      }
    });
  }

  #load(): void {
    const path = this.#opts.storePath;
    if (path === undefined || !existsSync(path)) return;
    try {
      const data = JSON.parse(readFileSync(path, "utf8")) as {
        version?: number;
        endpoints?: { id?: unknown; datapath?: unknown; endpoint?: unknown }[];
      };
      if (data.version !== REGISTRY_VERSION || !Array.isArray(data.endpoints)) {
        throw new Error("not a weft policy registry");
      }
      for (const e of data.endpoints) {
        if (typeof e.id !== "string") continue;
        const local = this.#validate(e.id, { ...(e.endpoint as object), datapath: e.datapath });
        this.#locals.set(local.id, local);
      }
    } catch (err) {
      this.#opts.log.error("policy endpoint registry not restored", {
        file: path,
        error: (err as Error).message,
      });
    }
  }

  #save(): void {
    const path = this.#opts.storePath;
    if (path === undefined) return;
    const text = JSON.stringify(
      {
        version: REGISTRY_VERSION,
        endpoints: this.list().map((l) => ({
          id: l.id,
          datapath: l.datapath,
          endpoint: l.endpoint,
        })),
      },
      null,
      1,
    );
    writeFileAtomically(path, text);
  }
}
