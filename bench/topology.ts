// The benchmark topology, built with the e2e harness: two host namespaces h1, h2 on the lab's
// bridge (underlay 198.18.0.1/.2, MTU 1500), and three paths between them:
//   veth   h1 → h2 directly over the underlay (veth – bridge – veth)
//   vxlan  a kernel VXLAN device in each host namespace (198.19.42.1/.2)
//   weft   weft in each host namespace, endpoint namespaces e1/e2 on persistent TAPs (198.19.0.1/.2)
import {
  launchWeft,
  waitForPing,
  waitMesh,
  type Endpoint,
  type Host,
  type Lab,
  type WeftNode,
} from "../test/harness/index.js";
import { findProcess } from "./procfs.js";

export const WEFT_MTU = 1376;
/** The kernel VXLAN device gets weft's MTU, so that both overlays carry the same TCP MSS. */
export const VXLAN_MTU = WEFT_MTU;
export const VXLAN_ID = 42;
export const VXLAN_PORT = 4789;
export const VXLAN_DEV = "vx42";

export type PathId = "veth" | "vxlan" | "weft";

export interface BenchPath {
  id: PathId;
  label: string;
  mtu: number;
  clientNs: string;
  serverNs: string;
  serverIp: string;
  /** Fixed iperf3 server ports per test. */
  tcpPort: number;
  udpPort: number;
}

export interface WeftProc {
  label: string;
  node: WeftNode;
  /** PID of the node process itself (for /proc sampling). */
  pid: number;
}

export interface Topology {
  h1: Host;
  h2: Host;
  e1?: Endpoint;
  e2?: Endpoint;
  weft: WeftProc[];
}

export async function addHosts(lab: Lab): Promise<{ h1: Host; h2: Host }> {
  const h1 = await lab.addHost(1);
  const h2 = await lab.addHost(2);
  return { h1, h2 };
}

export async function setupVeth(h1: Host, h2: Host): Promise<BenchPath> {
  await waitForPing(h1.ns, h2.ip, 10_000);
  return {
    id: "veth",
    label: "raw veth (via bridge)",
    mtu: 1500,
    clientNs: h1.ns,
    serverNs: h2.ns,
    serverIp: h2.ip,
    tcpPort: 5301,
    udpPort: 5311,
  };
}

export async function setupVxlan(lab: Lab, h1: Host, h2: Host): Promise<BenchPath> {
  const overlay = (h: Host) => `198.19.${VXLAN_ID}.${h.index}`;
  for (const [self, other] of [
    [h1, h2],
    [h2, h1],
  ] as const) {
    await lab.execOk(null, "ip", [
      "-n",
      self.ns,
      "link",
      "add",
      VXLAN_DEV,
      "type",
      "vxlan",
      "id",
      String(VXLAN_ID),
      "dstport",
      String(VXLAN_PORT),
      "dev",
      "eth0",
      "local",
      self.ip,
      "remote",
      other.ip,
    ]);
    await lab.execOk(null, "ip", [
      "-n",
      self.ns,
      "link",
      "set",
      VXLAN_DEV,
      "mtu",
      String(VXLAN_MTU),
    ]);
    await lab.execOk(null, "ip", [
      "-n",
      self.ns,
      "addr",
      "add",
      `${overlay(self)}/24`,
      "dev",
      VXLAN_DEV,
    ]);
    await lab.execOk(null, "ip", ["-n", self.ns, "link", "set", VXLAN_DEV, "up"]);
  }
  await waitForPing(h1.ns, overlay(h2), 10_000);
  return {
    id: "vxlan",
    label: "kernel VXLAN",
    mtu: VXLAN_MTU,
    clientNs: h1.ns,
    serverNs: h2.ns,
    serverIp: overlay(h2),
    tcpPort: 5302,
    udpPort: 5312,
  };
}

export async function setupWeft(lab: Lab, topo: Topology): Promise<BenchPath> {
  const { h1, h2 } = topo;
  const e1 = await lab.addEndpoint("e1", { cidr: "198.19.0.1/24", mtu: WEFT_MTU });
  const e2 = await lab.addEndpoint("e2", { cidr: "198.19.0.2/24", mtu: WEFT_MTU });
  topo.e1 = e1;
  topo.e2 = e2;
  const w1 = launchWeft(lab, h1, { taps: [e1.tapArg], mtu: WEFT_MTU, peers: [h2.ip] });
  const w2 = launchWeft(lab, h2, { taps: [e2.tapArg], mtu: WEFT_MTU, peers: [h1.ip] });
  topo.weft = [w1, w2].map((node, i) => ({
    label: `weft h${i + 1}`,
    node,
    pid: findProcess(node.pid, "node") ?? node.pid,
  }));
  await waitMesh([w1, w2], 30_000);
  await waitForPing(e1.ns, e2.ip, 15_000);
  // The launcher may have been a wrapper when first looked at; look again now that it runs.
  for (const w of topo.weft) w.pid = findProcess(w.node.pid, "node") ?? w.node.pid;
  return {
    id: "weft",
    label: "weft sleeve",
    mtu: WEFT_MTU,
    clientNs: e1.ns,
    serverNs: e2.ns,
    serverIp: e2.ip,
    tcpPort: 5303,
    udpPort: 5313,
  };
}
