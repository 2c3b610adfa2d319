import { peerDataFile } from "../util/atomic-file.js";
import type { Server } from "node:http";
import { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import { formatPeerName, type PeerName } from "../wire/peer-name.js";
import { DataPlane } from "../datapath/data-plane.js";
import type { DatagramSocket } from "../sleeve/datagram-socket.js";
import { Router } from "../mesh/router.js";
import { buildReport } from "../status/report.js";
import { startStatusServer } from "../status/server.js";
import { startRouterApi } from "../api/router-api.js";
import { makeIdentity } from "./identity.js";
import type { HostPort, NetworkArg, TapArg } from "./options.js";
import type { ConnectionSecurity } from "../mesh/connection.js";
import { loadSodium, sodiumLoadError, type BackendName } from "../crypto/backend.js";
import { loadSecretBox } from "../crypto/secretbox.js";
import { loadKeyAgreement } from "../crypto/session.js";
import { DEFAULT_MAC_TABLE_SIZE } from "../switch/mac-table.js";
import { networkBridgeName, nodePortName } from "./options.js";
import type { FastdpOptions } from "../mesh/router.js";
import type { KernelDatapath } from "../fastdp/kernel-datapath.js";
import { Allocator, IPAM_CHANNEL, type IpallocInit } from "../ipam/allocator.js";
import { JsonFileStore } from "../ipam/store.js";
import { formatAddress, formatCidr } from "../ipam/address.js";
import type { Range } from "../ipam/types.js";
import type { PolicyConfig, RunningPolicy } from "./policy-launch.js";

export interface LaunchConfig {
  name?: PeerName;
  nickname?: string;
  host: string;
  port: number;
  mtu: number;
  taps: TapArg[];
  networks: NetworkArg[];
  statusAddr: HostPort;
  httpAddr: HostPort;
  peers: HostPort[];
  macTableSize?: number;
  udpBackend?: UdpBackend;
  /** Encrypt every connection with this password (raw bytes; empty means none, as Weave). */
  password?: Buffer;
  cryptoBackend?: CryptoBackend;
  /** Dial peers that others report (default true). */
  discovery?: boolean;
  /** The kernel bridge of the default network's endpoints; fastdp needs it. */
  bridge?: string;
  /** False: sleeve only (`--no-fastdp`). */
  fastdp?: boolean;
  fastdpHoldAfterMs?: number;
  /** `--allow-spoofing`: attached endpoints may send from any MAC or address. */
  allowSpoofing?: boolean;
  /** IPAM (spec 8); absent: off. */
  ipam?: IpamConfig;
  /** Network policy's source; absent: endpoints are registered and gossiped, nothing judged. */
  policy?: PolicyConfig;
  /** `--data-dir`: IPAM's database and the policy registry of this host's endpoints. */
  dataDir: string;
}

export interface IpamConfig {
  range: Range;
  defaultSubnet: Range;
  init: IpallocInit;
  dataDir: string;
}

export type CryptoBackend = "auto" | BackendName;

/** The password and the crypto backends every connection uses, or undefined without one. */
function loadSecurity(config: LaunchConfig, log: Logger): ConnectionSecurity | undefined {
  if (config.password === undefined || config.password.length === 0) return undefined;
  const prefer = config.cryptoBackend === "auto" ? undefined : config.cryptoBackend;
  if (prefer === "sodium" && loadSodium() === null) {
    throw new Error(`--crypto-backend sodium: sodium-native does not load (${sodiumLoadError()})`);
  }
  const box = loadSecretBox(prefer);
  const agreement = loadKeyAgreement(prefer);
  if (box.name !== "sodium" && prefer === undefined) {
    log.warn("sodium-native unavailable: encryption uses tweetnacl (about 10x slower)", {
      error: sodiumLoadError(),
    });
  }
  log.info("encryption enabled", { backend: box.name });
  return { password: config.password, box, agreement };
}

export interface Running {
  stop(): Promise<void>;
}

export type UdpBackend = "auto" | "native" | "dgram";

/**
 * Opens the sleeve socket: batched on the native addon, or on Node's dgram where the addon
 * cannot load (or when asked). The native modules are imported lazily for that reason.
 */
async function openSocket(
  host: string,
  port: number,
  backend: UdpBackend,
  counters: Counters,
  log: Logger,
): Promise<DatagramSocket> {
  if (backend !== "dgram") {
    try {
      const { NativeDatagramSocket } = await import("../datapath/native-udp.js");
      return new NativeDatagramSocket(host, port, counters, log);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (backend === "native" || code === "EADDRINUSE" || code === "EACCES") throw err;
      log.warn("native addon unavailable: the sleeve uses dgram (slower)", {
        error: (err as Error).message,
      });
    }
  }
  const { DgramDatagramSocket } = await import("../datapath/dgram-udp.js");
  return DgramDatagramSocket.open(host, port);
}

/** The kernel's route MTU lookup, from the native addon when it loads. */
async function routeMtuLookup(log: Logger): Promise<{ pathMtu?: (ip: string) => number }> {
  try {
    const { pathMtu } = await import("../native/addon.js");
    return { pathMtu };
  } catch (err) {
    log.warn("no route MTU lookup without the native addon; sleeve MTUs assume a 1500 underlay", {
      error: (err as Error).message,
    });
    return {};
  }
}

/**
 * Bridge mode: the default network's endpoints sit on a kernel bridge, with Node's own TAP
 * port on it (isolated, so it only sees what endpoints send), and where the kernel can, each
 * peer's tunnel joins the bridge too (the fast datapath).
 */
async function setupBridge(
  config: LaunchConfig,
  dataPlane: DataPlane,
  counters: Counters,
  log: Logger,
): Promise<FastdpOptions> {
  const bridge = config.bridge!;
  const nodePort = nodePortName(bridge);
  const { LinkOps } = await import("../fastdp/link-ops.js");
  const { TapPort } = await import("../datapath/tap-port.js");
  const links = new LinkOps();
  try {
    links.ensureBridge(bridge, config.mtu);
    const port = new TapPort({
      ifname: nodePort,
      network: dataPlane.networks.defaultNetwork,
      output: dataPlane.output,
      sink: dataPlane,
      counters,
      log,
    });
    dataPlane.addPort(port);
    links.setMtu(nodePort, config.mtu);
    links.setMaster(nodePort, bridge);
    links.setBridgePort(nodePort, { isolated: true, learning: true });
    links.setUp(nodePort, true);
  } finally {
    links.close();
  }
  log.info("default network on the kernel bridge", { bridge, nodePort });
  const holdAfter =
    config.fastdpHoldAfterMs !== undefined ? { holdAfterMs: config.fastdpHoldAfterMs } : {};
  if (config.fastdp === false) return { unavailable: "fastdp: disabled by --no-fastdp" };
  const { KernelDatapath } = await import("../fastdp/kernel-datapath.js");
  const opened = await KernelDatapath.open({
    bridge,
    nodePort,
    mtu: config.mtu,
    vxlanPort: config.port + 1,
    encrypted: config.password !== undefined && config.password.length > 0,
    log: log.child({ component: "fastdp" }),
  });
  if ("unavailable" in opened) {
    log.warn("no kernel fast datapath on this host; every connection uses sleeve", {
      reason: opened.unavailable,
    });
    return { unavailable: opened.unavailable, ...holdAfter };
  }
  log.info("kernel fast datapath ready", { encrypted: opened.encrypted, mtu: opened.mtu });
  return { host: opened, ...holdAfter };
}

/**
 * Bridge mode, named networks: each gets a kernel bridge of its own for `weft attach --network`
 * endpoints, with Node's TAP port on it in that network, so frames between its endpoints on
 * this host stay in the kernel and only the rest crosses Node's switch (over sleeve: the
 * kernel's tunnels carry the default network only). Returns network name → bridge.
 */
async function setupNetworkBridges(
  config: LaunchConfig,
  dataPlane: DataPlane,
  counters: Counters,
  log: Logger,
): Promise<Map<string, string>> {
  const bridges = new Map<string, string>();
  const named = config.networks.filter((n) => n.name !== dataPlane.networks.defaultNetwork.name);
  if (named.length === 0) return bridges;
  const { LinkOps } = await import("../fastdp/link-ops.js");
  const { TapPort } = await import("../datapath/tap-port.js");
  const links = new LinkOps();
  try {
    for (const network of named) {
      const bridge = networkBridgeName(config.bridge!, network.name);
      const nodePort = nodePortName(bridge);
      links.ensureBridge(bridge, config.mtu);
      dataPlane.addPort(
        new TapPort({
          ifname: nodePort,
          network: dataPlane.networks.add(network.name),
          output: dataPlane.output,
          sink: dataPlane,
          counters,
          log,
        }),
      );
      links.setMtu(nodePort, config.mtu);
      links.setMaster(nodePort, bridge);
      links.setBridgePort(nodePort, { isolated: true, learning: true });
      links.setUp(nodePort, true);
      bridges.set(network.name, bridge);
      log.info("network on a kernel bridge", { network: network.name, bridge, nodePort });
    }
  } finally {
    links.close();
  }
  return bridges;
}

/** Per network, what the report says: its kernel bridge and its IPAM subnet. */
function networkSetup(
  config: LaunchConfig,
  defaultNetwork: string,
  bridges: ReadonlyMap<string, string>,
): Map<string, { bridge?: string; subnet?: string }> {
  const cidr = (r: Range): string =>
    formatCidr({ address: r.start, prefixLength: 32 - Math.log2(r.end - r.start) });
  const out = new Map<string, { bridge?: string; subnet?: string }>();
  out.set(defaultNetwork, {
    ...(config.bridge !== undefined ? { bridge: config.bridge } : {}),
    ...(config.ipam !== undefined ? { subnet: cidr(config.ipam.defaultSubnet) } : {}),
  });
  for (const n of config.networks) {
    if (n.name === defaultNetwork) continue;
    const bridge = bridges.get(n.name);
    out.set(n.name, {
      ...(bridge !== undefined ? { bridge } : {}),
      ...(n.subnet !== undefined ? { subnet: cidr(n.subnet) } : {}),
    });
  }
  return out;
}

/** The IPAM peer on the `IPallocation` channel (spec 8), with its database under dataDir. */
function startIpam(
  config: IpamConfig,
  identity: { name: number; uid: bigint; nickname: string },
  router: Router,
  log: Logger,
): Allocator {
  const prefix = (r: Range): number => 32 - Math.log2(r.end - r.start);
  const allocator = new Allocator({
    us: identity.name,
    uid: identity.uid,
    nickname: identity.nickname,
    universe: config.range,
    defaultSubnet: { ...config.defaultSubnet, prefix: prefix(config.defaultSubnet) },
    init: config.init,
    store: new JsonFileStore(config.dataDir, identity.name),
    log,
    transport: {
      broadcast: (data) => router.mesh.gossip.gossipBroadcast(IPAM_CHANNEL, data),
      unicast: (dst, payload) => router.mesh.gossip.gossipUnicast(IPAM_CHANNEL, dst, payload),
      knownPeer: (peer) => router.mesh.peers.has(peer),
      givenPeers: () => router.targets().filter((t) => !t.discovered).length,
    },
  });
  router.mesh.gossip.register(IPAM_CHANNEL, allocator);
  log.info("IPAM on", {
    range: `${formatAddress(config.range.start)}/${32 - Math.log2(config.range.end - config.range.start)}`,
    init: config.init.mode,
    dataDir: config.dataDir,
  });
  return allocator;
}

/** Starts a peer: data plane, TAP ports, router, status endpoint. */
export async function launch(config: LaunchConfig, log: Logger): Promise<Running> {
  const counters = new Counters();
  const identity = makeIdentity(config.name, config.nickname);
  const socket = await openSocket(
    config.host,
    config.port,
    config.udpBackend ?? "auto",
    counters,
    log,
  );
  const dataPlane = new DataPlane({
    self: identity.name,
    socket,
    mtu: config.mtu,
    macTableSize: config.macTableSize ?? DEFAULT_MAC_TABLE_SIZE,
    counters,
    log,
  });
  let router: Router | undefined;
  let status: Server | undefined;
  let api: Server | undefined;
  let kernel: KernelDatapath | undefined;
  let ipam: Allocator | undefined;
  let policy: RunningPolicy | undefined;
  let endpointSweep: ReturnType<typeof setInterval> | undefined;
  try {
    for (const network of config.networks) dataPlane.networks.add(network.name);
    if (config.taps.length > 0) {
      const { TapPort } = await import("../datapath/tap-port.js");
      for (const tap of config.taps) {
        const port = new TapPort({
          ifname: tap.ifname,
          ...(tap.netns !== undefined ? { netnsPath: `/run/netns/${tap.netns}` } : {}),
          network: dataPlane.networks.add(tap.network),
          output: dataPlane.output,
          sink: dataPlane,
          counters,
          log,
        });
        dataPlane.addPort(port);
        log.info("attached TAP", { port: port.name, network: tap.network });
      }
    }
    const fastdp: FastdpOptions =
      config.bridge !== undefined
        ? await setupBridge(config, dataPlane, counters, log)
        : { unavailable: "fastdp: no kernel bridge (launch with --bridge)" };
    kernel = fastdp.host as KernelDatapath | undefined;
    const bridges =
      config.bridge !== undefined
        ? await setupNetworkBridges(config, dataPlane, counters, log)
        : new Map<string, string>();
    const networks = networkSetup(config, dataPlane.networks.defaultNetwork.name, bridges);
    const security = loadSecurity(config, log);
    router = new Router({
      fastdp,
      mtu: config.mtu,
      discovery: config.discovery !== false,
      ...(await routeMtuLookup(log)),
      identity,
      ...(security ? { security } : {}),
      host: config.host,
      port: config.port,
      dataPlane,
      counters,
      log,
    });
    const liveRouterForIpam = router;
    if (config.ipam !== undefined) {
      ipam = startIpam(config.ipam, identity, liveRouterForIpam, log);
    }
    const { startPolicy } = await import("./policy-launch.js");
    policy = await startPolicy({
      config: config.policy ?? {},
      bridges: config.bridge === undefined ? [] : [config.bridge, ...bridges.values()],
      dataDir: config.dataDir,
      self: identity.name,
      router,
      dataPlane,
      counters,
      log,
    });
    const { EndpointPorts } = await import("../datapath/endpoint-ports.js");
    const liveEndpointPorts = new EndpointPorts({
      dataPlane,
      counters,
      log,
      storePath: peerDataFile(config.dataDir, "ports", identity.name),
    });
    liveEndpointPorts.restore();
    endpointSweep = setInterval(() => liveEndpointPorts.sweep(), 5000);
    endpointSweep.unref();
    await router.listen();
    const liveRouter = router;
    const liveIpam = ipam;
    const livePolicy = policy;
    status = await startStatusServer(
      config.statusAddr.host,
      config.statusAddr.port,
      () =>
        buildReport(liveRouter, dataPlane, counters, {
          mtu: config.mtu,
          port: config.port,
          ...(liveIpam !== undefined ? { ipam: liveIpam } : {}),
          ...(config.bridge !== undefined ? { bridge: config.bridge } : {}),
          antiSpoofing: config.allowSpoofing !== true,
          networks,
          policy: () => livePolicy.status(),
        }),
      log,
    );
    api = await startRouterApi(
      config.httpAddr.host,
      config.httpAddr.port,
      liveRouter,
      log,
      liveIpam,
      { "policy/endpoints": livePolicy.controller, ports: liveEndpointPorts },
    );
    dataPlane.start();
    for (const peer of config.peers) router.connect(peer.host, peer.port, peer.portGiven);
  } catch (err) {
    clearInterval(endpointSweep);
    await policy?.stop();
    ipam?.stop();
    await router?.stop();
    await kernel?.close();
    status?.close();
    api?.close();
    dataPlane.close();
    throw err;
  }
  log.info("weft started", {
    name: formatPeerName(identity.name),
    nickname: identity.nickname,
    port: config.port,
    status: `${config.statusAddr.host}:${config.statusAddr.port}`,
    mtu: config.mtu,
  });
  const liveRouter = router;
  const liveStatus = status;
  const liveApi = api;
  const liveKernel = kernel;
  const stopIpam = ipam;
  const stopPolicy = policy;
  const stopSweep = endpointSweep;
  return {
    async stop() {
      clearInterval(stopSweep);
      await stopPolicy.stop();
      stopIpam?.stop();
      await liveRouter.stop();
      await liveKernel?.close();
      liveStatus.closeAllConnections();
      await new Promise<void>((resolve) => liveStatus.close(() => resolve()));
      liveApi.closeAllConnections();
      await new Promise<void>((resolve) => liveApi.close(() => resolve()));
      dataPlane.close();
    },
  };
}
