import type { Counters } from "../util/counters.js";
import { formatPeerName } from "../wire/peer-name.js";
import { PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION } from "../wire/protocol.js";
import type { DataPlane } from "../datapath/data-plane.js";
import type { Router } from "../mesh/router.js";
import type { Allocator } from "../ipam/allocator.js";
import type { PolicyStatus } from "../policy/controller.js";
import type { ConnectionReport, PeerReport, Report, RouteReport } from "./render.js";

export const WEFT_VERSION = "0.1.0";

/** Builds the status report (Weave's /report shape, plus a `Weft` section) from live state. */
/** What the report says about this peer's set-up, besides live state. */
export interface ReportSetup {
  mtu: number;
  port: number;
  ipam?: Allocator;
  /** The default network's kernel bridge, in bridge mode. */
  bridge?: string;
  antiSpoofing: boolean;
  /** Per network: its kernel bridge (bridge mode) and its IPAM subnet, where it has them. */
  networks: ReadonlyMap<string, { bridge?: string; subnet?: string }>;
  policy?: () => PolicyStatus;
}

export function buildReport(
  router: Router,
  dataPlane: DataPlane,
  counters: Counters,
  setup: ReportSetup,
): Report {
  const { mtu, port, ipam, bridge, antiSpoofing } = setup;
  const self = router.identity;
  const selfName = formatPeerName(self.name);
  const table = router.mesh.peers;
  const label = (name: number): string =>
    `${formatPeerName(name)}(${table.get(name)?.nickname ?? ""})`;
  const connections: ConnectionReport[] = [];
  for (const conn of router.connections()) {
    const remote = conn.remote;
    if (remote === undefined || conn.state === "closed" || conn.state === "handshake") continue;
    const overlay = router.overlayStatus(conn);
    connections.push({
      Address: conn.remoteAddress,
      Outbound: conn.outbound,
      State: conn.state === "established" ? "established" : "pending",
      // Weave leaves this empty for live connections; weft says why fastdp is not in use.
      Info: overlay?.reason ?? "",
      Attrs: overlay
        ? { name: overlay.name, mtu: overlay.mtu, ...(conn.encrypted ? { encrypted: true } : {}) }
        : null,
      Name: formatPeerName(remote.name),
      NickName: remote.nickname,
    });
  }
  const peers: PeerReport[] = table.list().map((peer) => ({
    Name: formatPeerName(peer.name),
    NickName: peer.nickname,
    UID: peer.uid.toString(),
    ShortID: peer.shortId,
    Version: Number(peer.version),
    Connections: peer.connections.map((c) => ({
      Name: formatPeerName(c.name),
      NickName: table.get(c.name)?.nickname ?? "",
      Address: c.remoteTcpAddr,
      Outbound: c.outbound,
      Established: c.established,
    })),
  }));
  const routes: RouteReport[] = table
    .list()
    .filter((peer) => peer.name !== self.name)
    .map((peer) => {
      const via = dataPlane.routes.unicastNextHop(peer.name);
      return {
        Peer: label(peer.name),
        Via: via === undefined ? null : label(via),
        Direct: via === peer.name,
      };
    });
  for (const target of router.targets()) {
    if (target.state === "connected") continue;
    const retry = target.retryAt ? `, retry: ${new Date(target.retryAt).toISOString()}` : "";
    connections.push({
      Address: target.address,
      Outbound: true,
      State: target.state,
      Info: target.lastError ? `${target.lastError}${retry}` : "",
      Attrs: null,
    });
  }
  return {
    Version: WEFT_VERSION,
    ...(ipam ? { IPAM: ipam.status() } : {}),
    ...(setup.policy ? { Policy: setup.policy() } : {}),
    Router: {
      Protocol: "weave",
      ProtocolMinVersion: PROTOCOL_MIN_VERSION,
      ProtocolMaxVersion: PROTOCOL_MAX_VERSION,
      Encryption: router.encrypted,
      PeerDiscovery: router.discovery,
      Name: selfName,
      NickName: self.nickname,
      Port: port,
      Peers: peers,
      Connections: connections,
      Targets: router.targets().map((t) => t.address),
      TrustedSubnets: [],
    },
    Weft: {
      MTU: mtu,
      Datapath: bridge !== undefined ? "bridge" : "sleeve",
      ...(bridge !== undefined ? { Bridge: bridge } : {}),
      AntiSpoofing: antiSpoofing,
      Networks: dataPlane.networks.all().map((n) => ({
        Name: n.name,
        VLAN: n.vlan,
        Ports: n.ports.map((p) => p.name),
        MACs: n.macs.size,
        ...networkSetup(setup.networks.get(n.name)),
      })),
      Routes: routes,
      Counters: counters.snapshot(),
    },
  };
}

function networkSetup(setup: { bridge?: string; subnet?: string } | undefined): {
  Bridge?: string;
  Subnet?: string;
} {
  return {
    ...(setup?.bridge !== undefined ? { Bridge: setup.bridge } : {}),
    ...(setup?.subnet !== undefined ? { Subnet: setup.subnet } : {}),
  };
}
