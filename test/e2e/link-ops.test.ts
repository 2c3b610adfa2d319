// The fast datapath's kernel plumbing built by LinkOps alone (iproute2 only makes the veths and
// reads back): two underlay namespaces joined by a veth, each with a bridge, an endpoint behind
// a veth on it, and one VXLAN device per the design (receive VNI = the device's id; the send VNI
// and the remote in its all-zero default FDB entry), an isolated port of the bridge. The
// endpoints then ping each other through the kernel VXLAN.
import { afterAll, describe, expect, it } from "vitest";
import { LinkOpsError } from "../../src/fastdp/link-ops.js";
import { ping, waitForPing, type Lab } from "../harness/index.js";
import { useLab } from "./support.js";
import {
  BRIDGE,
  ENDPOINT_PORT,
  MTU,
  PORT,
  VXLAN,
  buildVxlanFabric,
  type FabricSide,
} from "./vxlan-fabric.js";

describe("LinkOps: a kernel VXLAN fast datapath between two namespaces", () => {
  let a: FabricSide;
  let b: FabricSide;
  let lab: Lab;

  const made = useLab("link-ops", async (l) => {
    lab = l;
    ({ a, b } = await buildVxlanFabric(lab));
    return {};
  });

  afterAll(() => {
    a?.ops.close();
    b?.ops.close();
  });

  it("sets up the links as asked", () => {
    made();
    const links = a.ops.listLinks();
    const bridge = links.find((l) => l.name === BRIDGE)!;
    const vxlan = links.find((l) => l.name === VXLAN)!;
    const port = links.find((l) => l.name === ENDPOINT_PORT)!;
    expect(bridge).toMatchObject({ kind: "bridge", mtu: MTU, up: true });
    expect(vxlan).toMatchObject({ kind: "vxlan", mtu: MTU, up: true, master: bridge.index });
    expect(vxlan.vxlan).toEqual({ vni: 0x002001, port: PORT, local: "198.18.0.1" });
    expect(port).toMatchObject({ kind: "veth", mtu: MTU, up: true, master: bridge.index });
    expect(a.ops.linkByName(VXLAN)).toEqual(vxlan);
    expect(a.ops.linkByName("nothere")).toBeUndefined();
    expect(links.find((l) => l.name === "eth0")).toMatchObject({ mtu: 1500, up: true });
  });

  it("configures the VXLAN device and its default FDB entry as asked", async () => {
    const show = await lab.execOk(a.ns, "ip", ["-d", "-j", "link", "show", VXLAN]);
    const [info] = JSON.parse(show.stdout) as {
      linkinfo: { info_data: Record<string, unknown> };
    }[];
    expect(info!.linkinfo.info_data).toMatchObject({
      id: 0x002001,
      port: PORT,
      local: "198.18.0.1",
      ttl: 64,
      df: "set",
      learning: false,
      udp_csum: false,
    });
    const fdb = a.ops.listFdb(VXLAN).filter((e) => e.lladdr === "00:00:00:00:00:00");
    expect(fdb).toHaveLength(1);
    expect(fdb[0]).toMatchObject({ dst: "198.18.0.2", vni: 0x001002 });
    const text = await lab.execOk(a.ns, "bridge", ["fdb", "show", "dev", VXLAN]);
    expect(text.stdout).toMatch(/^00:00:00:00:00:00 dst 198\.18\.0\.2 vni 4098 self permanent/m);
  });

  it("makes the VXLAN device an isolated bridge port", async () => {
    for (const side of [a, b]) {
      const r = await lab.execOk(side.ns, "bridge", ["-d", "link", "show", "dev", VXLAN]);
      expect(r.stdout).toMatch(/isolated on/);
      const port = await lab.execOk(side.ns, "bridge", [
        "-d",
        "link",
        "show",
        "dev",
        ENDPOINT_PORT,
      ]);
      expect(port.stdout).toMatch(/isolated off/);
    }
  });

  it("carries the endpoints' traffic through the kernel VXLAN", async () => {
    await waitForPing(a.endpointNs, b.endpointIp, 10_000);
    const r = await ping(b.endpointNs, a.endpointIp, { count: 5, intervalMs: 50 });
    expect(r.all, r.output).toBe(true);
    // Full-size frames: 1376-byte IP packets, DF set inside and (df set) outside.
    const big = await ping(a.endpointNs, b.endpointIp, {
      count: 3,
      size: MTU - 28,
      dontFragment: true,
    });
    expect(big.all, big.output).toBe(true);
    // Encapsulated with the peer's receive VNI: the VXLAN counters moved on both devices.
    const stats = await lab.execOk(b.ns, "ip", ["-s", "-j", "link", "show", VXLAN]);
    const [s] = JSON.parse(stats.stdout) as { stats64: { rx: { packets: number } } }[];
    expect(s!.stats64.rx.packets).toBeGreaterThan(0);
  });

  it("is idempotent where it says so, and replaces the default FDB remote", () => {
    expect(a.ops.ensureBridge(BRIDGE, MTU)).toMatchObject({ kind: "bridge", mtu: MTU, up: true });
    a.ops.addDefaultFdb(VXLAN, { dst: "198.18.0.2", vni: 0x001002 });
    a.ops.addDefaultFdb(VXLAN, { dst: "198.18.0.9", vni: 77, port: 4789 });
    const moved = a.ops.listFdb(VXLAN).filter((e) => e.lladdr === "00:00:00:00:00:00");
    expect(moved).toHaveLength(1);
    expect(moved[0]).toMatchObject({ dst: "198.18.0.9", vni: 77, port: 4789 });
    a.ops.addDefaultFdb(VXLAN, { dst: "198.18.0.2", vni: 0x001002 });
    const back = a.ops.listFdb(VXLAN).filter((e) => e.lladdr === "00:00:00:00:00:00");
    expect(back).toHaveLength(1);
    expect(back[0]).toMatchObject({ dst: "198.18.0.2", vni: 0x001002 });
    expect(back[0]!.port).toBeUndefined();
  });

  it("flushes what the bridge learned on a port, and keeps the static entries", async () => {
    await waitForPing(a.endpointNs, b.endpointIp, 10_000);
    const learned = (): string[] =>
      a.ops
        .listFdb(VXLAN)
        .filter((e) => e.master !== undefined && (e.state & 0x80) === 0)
        .map((e) => e.lladdr!);
    expect(learned().length).toBeGreaterThan(0);
    a.ops.flushLearnedFdb(VXLAN);
    expect(learned()).toEqual([]);
    const permanent = a.ops.listFdb(VXLAN).filter((e) => e.master !== undefined);
    expect(permanent.length).toBeGreaterThan(0);
  });

  it("names the operation, the link and the errno when the kernel refuses", () => {
    let err: unknown;
    try {
      a.ops.setBridgePort("eth0", { isolated: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LinkOpsError);
    expect((err as LinkOpsError).code).toBe("EOPNOTSUPP");
    expect((err as Error).message).toMatch(/eth0/);
    expect(() => a.ops.setMaster("nothere", BRIDGE)).toThrow(/enslave to wbr nothere: ENODEV/);
    expect(() => a.ops.ensureBridge("eth0", MTU)).toThrow(/not a bridge/);
    expect(() => a.ops.createVxlan({ name: "eth0", vni: 5 })).toThrow(/veth link has that name/);
    // Same VNI, port and (no) group as the existing device: the kernel says EEXIST.
    expect(() => a.ops.createVxlan({ name: "wvx2", vni: 0x002001, port: PORT })).toThrow(
      /create vxlan \(vni 8193\) wvx2: EEXIST/,
    );
    expect(a.ops.deleteLink("nothere")).toBe(false);
  });

  it("replaces a stale VXLAN device of the same name", () => {
    const before = b.ops.linkByName(VXLAN)!;
    const again = b.ops.createVxlan({ name: VXLAN, vni: 0x001002, port: PORT, mtu: MTU });
    expect(again.index).not.toBe(before.index);
    expect(again).toMatchObject({ kind: "vxlan", up: false, vxlan: { vni: 0x001002 } });
    expect(again.master).toBeUndefined();
  });

  it("takes it all down again", () => {
    for (const side of [a, b]) {
      side.ops.setMaster(VXLAN, null);
      expect(side.ops.linkByName(VXLAN)!.master).toBeUndefined();
      side.ops.setUp(ENDPOINT_PORT, false);
      expect(side.ops.linkByName(ENDPOINT_PORT)!.up).toBe(false);
      side.ops.setMtu(ENDPOINT_PORT, 1300);
      expect(side.ops.linkByName(ENDPOINT_PORT)!.mtu).toBe(1300);
      expect(side.ops.deleteLink(VXLAN)).toBe(true);
      expect(side.ops.deleteLink(ENDPOINT_PORT)).toBe(true);
      expect(side.ops.deleteLink(BRIDGE)).toBe(true);
      expect(side.ops.deleteLink(VXLAN)).toBe(false);
      const names = side.ops.listLinks().map((l) => l.name);
      expect(names.sort()).toEqual(["eth0", "lo"]);
    }
  });
});
