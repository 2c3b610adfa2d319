// The fast datapath's kernel plumbing built with LinkOps, shared by the LinkOps and
// PacketSocket suites: two underlay namespaces a and b joined by a veth (eth0 198.18.0.1/.2),
// each with a bridge, an endpoint namespace behind a veth on it (198.19.0.1/.2), and one VXLAN
// device per the design (receive VNI = the device's id; the send VNI and the remote in its
// all-zero default FDB entry), an isolated port of the bridge.
import { LinkOps } from "../../src/fastdp/link-ops.js";
import type { Lab } from "../harness/index.js";

export const MTU = 1376;
export const PORT = 6784;
export const BRIDGE = "wbr";
export const VXLAN = "wvx";
export const ENDPOINT_PORT = "vep";

export interface FabricSide {
  ns: string;
  netnsPath: string;
  ops: LinkOps;
  underlayIp: string;
  vniIn: number;
  endpointNs: string;
  endpointIp: string;
}

async function buildSide(
  lab: Lab,
  short: string,
  underlayIp: string,
  endpointIp: string,
  vniIn: number,
  peer: { ip: string; vniIn: number },
): Promise<FabricSide> {
  const ns = lab.nsName(short);
  const netnsPath = `/run/netns/${ns}`;
  const endpointNs = await lab.addNamespace(`e${short}`);
  const ops = new LinkOps({ netnsPath });
  ops.ensureBridge(BRIDGE, MTU);
  await lab.execOk(ns, "ip", [
    ...["link", "add", ENDPOINT_PORT, "mtu", String(MTU), "type", "veth"],
    ...["peer", "name", "eth0", "mtu", String(MTU), "netns", endpointNs],
  ]);
  ops.setMaster(ENDPOINT_PORT, BRIDGE);
  ops.setUp(ENDPOINT_PORT, true);
  await lab.execOk(endpointNs, "ip", ["addr", "add", `${endpointIp}/24`, "dev", "eth0"]);
  await lab.execOk(endpointNs, "ip", ["link", "set", "eth0", "up"]);
  ops.createVxlan({
    name: VXLAN,
    vni: vniIn,
    port: PORT,
    local: underlayIp,
    ttl: 64,
    df: true,
    learning: false,
    udpCsum: false,
    mtu: MTU,
  });
  ops.addDefaultFdb(VXLAN, { dst: peer.ip, vni: peer.vniIn });
  ops.setMaster(VXLAN, BRIDGE);
  ops.setBridgePort(VXLAN, { isolated: true, learning: true });
  ops.setUp(VXLAN, true);
  return { ns, netnsPath, ops, underlayIp, vniIn, endpointNs, endpointIp };
}

/** Builds both sides; close their `ops` after the suite. */
export async function buildVxlanFabric(lab: Lab): Promise<{ a: FabricSide; b: FabricSide }> {
  const nsA = await lab.addNamespace("a");
  const nsB = await lab.addNamespace("b");
  await lab.execOk(nsA, "ip", [
    ...["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsB],
  ]);
  for (const [ns, ip] of [
    [nsA, "198.18.0.1"],
    [nsB, "198.18.0.2"],
  ] as const) {
    await lab.execOk(ns, "ip", ["addr", "add", `${ip}/24`, "dev", "eth0"]);
    await lab.execOk(ns, "ip", ["link", "set", "eth0", "mtu", "1500", "up"]);
  }
  const a = await buildSide(lab, "a", "198.18.0.1", "198.19.0.1", 0x002001, {
    ip: "198.18.0.2",
    vniIn: 0x001002,
  });
  const b = await buildSide(lab, "b", "198.18.0.2", "198.19.0.2", 0x001002, {
    ip: "198.18.0.1",
    vniIn: 0x002001,
  });
  return { a, b };
}
