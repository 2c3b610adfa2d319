// PacketSocket on kernel VXLAN devices, as the fast datapath uses it for heartbeats: two
// underlay namespaces joined by a veth, each with a bridge, an endpoint behind a veth, and a
// VXLAN device (an isolated bridge port) whose default FDB entry points at the other side.
// Heartbeat-like frames (all-zero MACs and EtherType) cross once, byte for byte; the endpoints'
// own traffic never reaches a PacketSocket; the bridge drops the heartbeats.
import { afterAll, describe, expect, it } from "vitest";
import { PacketSocket } from "../../src/datapath/packet-socket.js";
import { packetOpen } from "../../src/native/addon.js";
import { sleep, waitFor, waitForPing, type Lab } from "../harness/index.js";
import { useLab } from "./support.js";
import { BRIDGE, MTU, VXLAN, buildVxlanFabric, type FabricSide } from "./vxlan-fabric.js";

/** Spec 5.3: zero MACs and EtherType, UID (u64 BE) at 14, total length (u16 BE) at 22, zeros. */
function heartbeat(uid: bigint, length = 14 + MTU): Buffer {
  const frame = Buffer.alloc(length);
  frame.writeBigUInt64BE(uid, 14);
  frame.writeUInt16BE(length, 22);
  return frame;
}

/** A PacketSocket that records what it receives. */
class Recorder {
  readonly frames: Buffer[] = [];
  readonly socket: PacketSocket;
  constructor(ifname: string, netnsPath: string, maxFrameSize?: number) {
    this.socket = new PacketSocket(ifname, (f) => this.frames.push(f), {
      netnsPath,
      ...(maxFrameSize === undefined ? {} : { maxFrameSize }),
    });
  }
}

describe("PacketSocket on kernel VXLAN devices", () => {
  let lab: Lab;
  let a: FabricSide;
  let b: FabricSide;
  const recorders: Recorder[] = [];
  const record = (ifname: string, netnsPath: string, maxFrameSize?: number): Recorder => {
    const r = new Recorder(ifname, netnsPath, maxFrameSize);
    recorders.push(r);
    return r;
  };
  let onA: Recorder; // the sender on side A
  let bystanderA: Recorder; // a second socket on A's VXLAN device
  let onB: Recorder;
  let bridgeB: Recorder; // on B's bridge device: frames the bridge passes up to the host
  let endpointB: Recorder; // in B's endpoint namespace: frames the bridge forwards

  const made = useLab("packet-socket", async (l) => {
    lab = l;
    ({ a, b } = await buildVxlanFabric(lab));
    onA = record(VXLAN, a.netnsPath);
    bystanderA = record(VXLAN, a.netnsPath);
    onB = record(VXLAN, b.netnsPath);
    bridgeB = record(BRIDGE, b.netnsPath);
    endpointB = record("eth0", `/run/netns/${b.endpointNs}`);
    return {};
  });

  afterAll(() => {
    for (const r of recorders) r.socket.close();
    a?.ops.close();
    b?.ops.close();
  });

  const vxlanRxPackets = async (side: FabricSide): Promise<number> => {
    const r = await lab.execOk(side.ns, "ip", ["-s", "-j", "link", "show", VXLAN]);
    const [s] = JSON.parse(r.stdout) as { stats64: { rx: { packets: number } } }[];
    return s!.stats64.rx.packets;
  };

  it("delivers a heartbeat to the other side exactly once, byte for byte", async () => {
    made();
    const frame = heartbeat(0x0123456789abcdefn);
    expect(frame.length).toBe(1390);
    expect(onA.socket.send(frame)).toBe(true);
    await waitFor(() => onB.frames.length > 0, { what: "the heartbeat at B", timeoutMs: 5000 });
    await sleep(300);
    expect(onB.frames).toHaveLength(1);
    expect(onB.frames[0]!.equals(frame)).toBe(true);
    expect(onA.socket.stats).toMatchObject({ txFrames: 1, txDropped: 0, rxFrames: 0 });
    expect(onB.socket.stats).toMatchObject({ rxFrames: 1, rxOversized: 0 });
  });

  it("never shows a host its own heartbeats (PACKET_IGNORE_OUTGOING)", () => {
    expect(onA.frames).toHaveLength(0);
    expect(bystanderA.frames).toHaveLength(0);
  });

  it("works the other way round", async () => {
    const frame = heartbeat(0xfedcba9876543210n);
    expect(onB.socket.send(frame)).toBe(true);
    await waitFor(() => onA.frames.length > 0, { what: "the heartbeat at A", timeoutMs: 5000 });
    await sleep(200);
    expect(onA.frames).toHaveLength(1);
    expect(onA.frames[0]!.equals(frame)).toBe(true);
    expect(bystanderA.frames).toHaveLength(1);
    expect(onB.frames).toHaveLength(1);
  });

  it("leaves heartbeats to the bridge, which drops them (zero source MAC)", () => {
    expect(bridgeB.frames).toHaveLength(0);
    expect(endpointB.frames).toHaveLength(0);
  });

  it("never delivers the endpoints' ordinary traffic", async () => {
    await waitForPing(a.endpointNs, b.endpointIp, 10_000);
    const before = await vxlanRxPackets(b);
    const flood = await lab.execOk(a.endpointNs, "ping", [
      ...["-f", "-c", "400", "-w", "20", "-s", "1000", b.endpointIp],
    ]);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(flood.stdout);
    expect(Number(m?.[2]), flood.stdout).toBeGreaterThanOrEqual(390);
    // The flood really went through the devices the sockets are bound to...
    expect((await vxlanRxPackets(b)) - before).toBeGreaterThanOrEqual(390);
    await sleep(200);
    // ...and none of it came out of any PacketSocket.
    expect(onA.frames).toHaveLength(1);
    expect(bystanderA.frames).toHaveLength(1);
    expect(onB.frames).toHaveLength(1);
    expect(bridgeB.frames).toHaveLength(0);
    expect(endpointB.frames).toHaveLength(0);
    for (const r of recorders) expect(r.socket.stats.rxOversized).toBe(0);
  });

  it("counts a frame longer than maxFrameSize as oversized", async () => {
    const small = record(VXLAN, b.netnsPath, 200);
    onA.socket.send(heartbeat(7n));
    onA.socket.send(heartbeat(8n, 100));
    await waitFor(() => onB.frames.length === 3, { what: "two heartbeats at B", timeoutMs: 5000 });
    await waitFor(() => small.socket.stats.rxOversized === 1 && small.frames.length === 1, {
      what: "one oversized and one delivered frame",
      timeoutMs: 5000,
    });
    expect(small.frames[0]!.equals(heartbeat(8n, 100))).toBe(true);
  });

  it("drops sends on a device that is down, and resumes when it is up", async () => {
    a.ops.setUp(VXLAN, false);
    b.ops.setUp(VXLAN, false);
    // Opened while its device is down: receives once the device is up.
    const late = record(VXLAN, b.netnsPath);
    expect(onA.socket.send(heartbeat(9n))).toBe(false);
    expect(onA.socket.stats.txDropped).toBe(1);
    a.ops.setUp(VXLAN, true);
    b.ops.setUp(VXLAN, true);
    const frame = heartbeat(10n);
    await waitFor(
      () => {
        onA.socket.send(frame);
        return late.frames.length > 0 && onB.frames.length > 3;
      },
      { what: "a heartbeat after the devices came back", timeoutMs: 5000, intervalMs: 200 },
    );
    expect(late.frames[0]!.equals(frame)).toBe(true);
    expect(onB.frames.at(-1)!.equals(frame)).toBe(true);
  });

  it("close() is idempotent and later sends are dropped", () => {
    const r = record(VXLAN, a.netnsPath);
    r.socket.close();
    r.socket.close();
    expect(r.socket.send(heartbeat(11n))).toBe(false);
    expect(r.socket.stats.txDropped).toBe(1);
  });

  it("names the step and the interface when it cannot open", () => {
    let err: NodeJS.ErrnoException | undefined;
    try {
      packetOpen("nothere", { netnsPath: a.netnsPath });
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err?.code).toBe("ENODEV");
    expect(err?.message).toMatch(
      /ioctl SIOCGIFINDEX\(nothere in \/run\/netns\/.*\): .*no such interface/,
    );
    expect(() => packetOpen(VXLAN, { netnsPath: "/run/netns/does-not-exist" })).toThrow(
      /open\(\/run\/netns\/does-not-exist\)/,
    );
    expect(() => new PacketSocket("nothere", () => undefined, { netnsPath: b.netnsPath })).toThrow(
      /ENODEV|No such device/,
    );
    expect(() => new PacketSocket(VXLAN, () => undefined, { maxFrameSize: 10 })).toThrow(
      RangeError,
    );
  });
});
