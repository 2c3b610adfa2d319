import type { Counters } from "../util/counters.js";
import { formatPeerName } from "../wire/peer-name.js";
import { PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION } from "../wire/protocol.js";
import type { DataPlane } from "../datapath/data-plane.js";
import type { Router } from "../mesh/router.js";
import type { ConnectionReport, PeerReport, Report } from "./render.js";

export const WEFT_VERSION = "0.1.0";

/** Builds the status report (Weave's /report shape, plus a `Weft` section) from live state. */
export function buildReport(
  router: Router,
  dataPlane: DataPlane,
  counters: Counters,
  mtu: number,
  port: number,
): Report {
  const self = router.identity;
  const selfName = formatPeerName(self.name);
  const connections: ConnectionReport[] = [];
  const selfPeer: PeerReport = {
    Name: selfName,
    NickName: self.nickname,
    UID: self.uid.toString(),
    ShortID: self.shortId,
    Version: 0,
    Connections: [],
  };
  const peers: PeerReport[] = [selfPeer];
  for (const conn of router.connections()) {
    const remote = conn.remote;
    if (remote === undefined || conn.state === "closed" || conn.state === "handshake") continue;
    const forwarder = router.forwarderOf(conn);
    const established = conn.state === "established";
    connections.push({
      Address: conn.remoteAddress,
      Outbound: conn.outbound,
      State: established ? "established" : "pending",
      Info: "",
      Attrs: forwarder
        ? { name: "sleeve", mtu: forwarder.mtu, ...(conn.encrypted ? { encrypted: true } : {}) }
        : null,
      Name: formatPeerName(remote.name),
      NickName: remote.nickname,
    });
    selfPeer.Connections.push({
      Name: formatPeerName(remote.name),
      NickName: remote.nickname,
      Address: conn.remoteAddress,
      Outbound: conn.outbound,
      Established: established,
    });
    peers.push({
      Name: formatPeerName(remote.name),
      NickName: remote.nickname,
      UID: remote.uid.toString(),
      ShortID: remote.shortId ?? 0,
      Version: 0,
      Connections: [],
    });
  }
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
    Router: {
      Protocol: "weave",
      ProtocolMinVersion: PROTOCOL_MIN_VERSION,
      ProtocolMaxVersion: PROTOCOL_MAX_VERSION,
      Encryption: router.encrypted,
      PeerDiscovery: false,
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
      Datapath: "sleeve",
      Networks: dataPlane.networks.all().map((n) => ({
        Name: n.name,
        VLAN: n.vlan,
        Ports: n.ports.map((p) => p.name),
        MACs: n.macs.size,
      })),
      Counters: counters.snapshot(),
    },
  };
}
