/**
 * Starting network policy in `weft launch`: the userspace enforcer on the switch, the endpoint
 * directory on the mesh, the registry the router API fills, the policy source (`--policy-dir` or
 * Kubernetes) and, in bridge mode, Weave-NPC's iptables on the kernel path, whose drops are read
 * back from NFLOG group 86 (once the first ruleset is in) so that status shows them.
 *
 * Without a source the registry and directory still run (other peers' policies may select this
 * host's endpoints), but nothing here judges a frame: the switch gets no filter and no iptables
 * rule is made.
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { Counters } from "../util/counters.js";
import { RateLimitedLog, type Logger } from "../util/log.js";
import type { PeerName } from "../wire/peer-name.js";
import { peerDataFile } from "../util/atomic-file.js";
import type { Router } from "../mesh/router.js";
import type { DataPlane } from "../datapath/data-plane.js";
import {
  PolicyController,
  type KernelPolicyBackend,
  type PolicySourceStatus,
  type PolicyStatus,
} from "../policy/controller.js";
import { ENDPOINTS_CHANNEL, EndpointDirectory } from "../policy/endpoint-directory.js";
import { PolicyEnforcer } from "../policy/enforcer.js";
import type { NflogReader, NflogReaderStats } from "../policy/nflog-reader.js";
import { PolicyDirSource } from "../policy/policy-dir.js";
import type { NpcPlan } from "../policy/npc/plan.js";
import { nodePortName } from "./options.js";

export interface PolicyConfig {
  /** `--policy-dir DIR`. */
  dir?: string;
  /** `--kubernetes`: policies, namespaces and pods from the API server. */
  kubernetes?: { kubeconfig?: string; nodeName: string };
}

export interface RunningPolicy {
  status(): PolicyStatus;
  readonly controller: PolicyController;
  stop(): Promise<void>;
}

const BRIDGE_NF_CALL_IPTABLES = "/proc/sys/net/bridge/bridge-nf-call-iptables";
/** A VXLAN tunnel to a peer (kernel-datapath.ts names them so). */
const TUNNEL_PATTERN = "weftvx+";

/**
 * iptables sees bridged frames only with br_netfilter's `bridge-nf-call-iptables` on, as Weave
 * sets it for its NPC. Throws saying what is missing.
 */
function enableBridgeNetfilter(log: Logger): void {
  let current: string;
  try {
    current = readFileSync(BRIDGE_NF_CALL_IPTABLES, "utf8").trim();
  } catch {
    throw new Error(
      `network policy on the kernel bridge needs br_netfilter (${BRIDGE_NF_CALL_IPTABLES} is missing: modprobe br_netfilter)`,
    );
  }
  if (current === "1") return;
  writeFileSync(BRIDGE_NF_CALL_IPTABLES, "1\n");
  log.info("turned on bridge-nf-call-iptables for network policy on the bridge");
}

interface KernelPath extends KernelPolicyBackend {
  /** The drop log's counters, once it reads. */
  dropLogStats(): NflogReaderStats | undefined;
}

/**
 * `bridges`: every kernel bridge endpoints sit on (the default network's, then others').
 * `onDrop` gets each packet the rules drop and log, once the first apply is done.
 */
async function kernelBackend(
  bridges: string[],
  log: Logger,
  onDrop: (packet: Uint8Array) => void,
): Promise<KernelPath> {
  const { NpcApplier } = await import("../policy/npc/apply.js");
  const { planNpc } = await import("../policy/npc/plan.js");
  const { NflogReader, heldElsewhere } = await import("../policy/nflog-reader.js");
  // Towards other hosts: Node's TAP on each bridge, and the default bridge's VXLAN tunnels.
  const options = { bridge: bridges, routerPort: [...bridges.map(nodePortName), TUNNEL_PATTERN] };
  const applier = new NpcApplier(options);
  // Applying resets the rules' counters: what the old rules counted is carried over first.
  let applied: NpcPlan | undefined;
  const carried = new Map<string, number>();
  const current = async (): Promise<Map<string, number>> =>
    applied === undefined ? new Map() : applier.allowedCounts(applied.allowRules);
  const removed = await applier.cleanup();
  if (removed.length > 0)
    log.info("removed network policy rules left over", { removed: removed.length });
  enableBridgeNetfilter(log);
  let reader: NflogReader | undefined;
  let tried = false;
  // Without the drop log, policy is enforced all the same; only status misses the drops.
  const openDropLog = (): void => {
    tried = true;
    try {
      reader = new NflogReader({
        onPacket: (p) => onDrop(p.payload),
        onError: (err) =>
          log.warn("stopped reading the kernel path's drops", { error: err.message }),
      });
    } catch (err) {
      log.warn(
        heldElsewhere(err)
          ? "NFLOG group 86 is held by another process (weave-npc's ulogd?): status will not show the kernel path's denied flows"
          : "cannot read NFLOG group 86: status will not show the kernel path's denied flows",
        { error: (err as Error).message },
      );
    }
  };
  return {
    apply: async (input) => {
      const plan = planNpc(input, options);
      for (const [policy, n] of await current()) {
        carried.set(policy, (carried.get(policy) ?? 0) + n);
      }
      applied = undefined; // if the apply fails, the counters are in an unknown state
      await applier.apply(plan);
      applied = plan;
      if (!tried) openDropLog();
    },
    allowedCounts: async () => {
      const total = new Map(carried);
      for (const [policy, n] of await current()) total.set(policy, (total.get(policy) ?? 0) + n);
      return total;
    },
    cleanup: async () => {
      reader?.close();
      await applier.cleanup();
    },
    dropLogStats: () => (reader === undefined ? undefined : { ...reader.stats }),
  };
}

export async function startPolicy(opts: {
  config: PolicyConfig;
  /** Bridge mode: every kernel bridge, the default network's first; empty otherwise. */
  bridges: string[];
  dataDir: string;
  self: PeerName;
  router: Router;
  dataPlane: DataPlane;
  counters: Counters;
  log: Logger;
}): Promise<RunningPolicy> {
  const log = opts.log.child({ component: "policy" });
  const { config, router } = opts;
  const enforcing = config.dir !== undefined || config.kubernetes !== undefined;
  const enforcer = new PolicyEnforcer({ log });
  // The directory exists before the controller that listens to it.
  const listener: { directoryChanged?: () => void } = {};
  const directory = new EndpointDirectory(opts.self, {
    counters: opts.counters,
    rejectLog: new RateLimitedLog(log, "warn"),
    onChange: () => listener.directoryChanged?.(),
  });
  router.mesh.gossip.register(ENDPOINTS_CHANNEL, directory);
  router.onPeersRemoved((names) => {
    for (const name of names) directory.forgetPeer(name);
  });

  const drops: { record?: (packet: Uint8Array) => void } = {};
  const kernel =
    enforcing && opts.bridges.length > 0
      ? await kernelBackend(opts.bridges, log, (packet) => drops.record?.(packet))
      : undefined;
  let sourceStatus: () => PolicySourceStatus = () => ({ source: "none", healthy: true });
  const stops: (() => void)[] = [];
  const live = new PolicyController({
    enforcer,
    directory,
    publish: (endpoints) =>
      router.mesh.gossip.gossipToAll(ENDPOINTS_CHANNEL, directory.setLocal(endpoints)),
    storePath: peerDataFile(opts.dataDir, "policy-endpoints", opts.self),
    ...(kernel !== undefined ? { kernel } : {}),
    log,
    sourceStatus: () => sourceStatus(),
    sourceLocalsOnSwitch: opts.bridges.length === 0,
  });
  listener.directoryChanged = () => live.directoryChanged();
  drops.record = (packet) => live.recordKernelDenied(packet);

  if (config.dir !== undefined) {
    const source = new PolicyDirSource(config.dir, (state) => live.setSource(state), log);
    await source.start();
    sourceStatus = () => source.status();
    stops.push(() => source.stop());
  } else if (config.kubernetes !== undefined) {
    // Loaded only when asked for: the client library takes most of a second to import.
    const { KubeSource, kubeSourceHealth, loadKubeConfig } =
      await import("../policy/kube-source.js");
    const source = new KubeSource({
      kubeConfig: loadKubeConfig(config.kubernetes.kubeconfig),
      nodeName: config.kubernetes.nodeName,
      onChange: (snapshot) => live.setSource(snapshot),
      logger: log,
    });
    source.start();
    sourceStatus = () => kubeSourceHealth(source.status());
    stops.push(() => source.stop());
  }
  if (enforcing) opts.dataPlane.switch.setFilter(enforcer);
  live.start();
  const sweep = setInterval(() => {
    live.sweep();
    void live.refreshKernelCounts();
  }, 5000);
  sweep.unref();
  log.info("network policy", {
    source: sourceStatus().source,
    kernelPath: kernel !== undefined,
  });
  return {
    controller: live,
    status: () => {
      const status = live.status();
      const dropLog = kernel?.dropLogStats();
      if (dropLog === undefined) return status;
      const counters = {
        ...status.counters,
        kernelLogMalformed: dropLog.malformed,
        kernelLogOverruns: dropLog.overruns,
      };
      return { ...status, counters };
    },
    async stop() {
      clearInterval(sweep);
      for (const stop of stops) stop();
      live.stop();
      opts.dataPlane.switch.setFilter(undefined);
      await live.settled();
      await kernel?.cleanup?.();
    },
  };
}
