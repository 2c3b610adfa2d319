import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import { MAC_MAX_AGE_MS } from "../../../src/switch/mac-table.js";
import { NetworkRegistry, vlanForNetwork, type Network } from "../../../src/switch/network.js";
import type { LocalPort } from "../../../src/switch/port.js";
import { Switch, type Overlay } from "../../../src/switch/switch.js";
import { Counters } from "../../../src/util/counters.js";

const SELF = 0x0a0000000001;
const PEER_X = 0x0a0000000002;
const PEER_Y = 0x0a0000000003;
const MAX_FRAME = 1376 + 14;

const BCAST = "ff:ff:ff:ff:ff:ff";
const MCAST = "01:00:5e:00:00:01";
const M1 = "02:00:00:00:00:01";
const M2 = "02:00:00:00:00:02";
const M3 = "02:00:00:00:00:03";
const M9 = "02:00:00:00:00:09";

const macBytes = (mac: string): Buffer => Buffer.from(mac.replace(/:/g, ""), "hex");

/** An untagged frame dst, src, ethertype 0x0800, payload. */
function frame(dst: string, src: string, payload = "cafe", etherType = 0x0800): Buffer {
  const et = Buffer.alloc(2);
  et.writeUInt16BE(etherType);
  return Buffer.concat([macBytes(dst), macBytes(src), et, Buffer.from(payload, "hex")]);
}

/** The same frame with an 802.1Q tag for `vlan` after the MACs. */
function tagged(untagged: Buffer, vlan: number): Buffer {
  const tag = Buffer.alloc(4);
  tag.writeUInt16BE(0x8100);
  tag.writeUInt16BE(vlan, 2);
  return Buffer.concat([untagged.subarray(0, 12), tag, untagged.subarray(12)]);
}

class FakePort implements LocalPort {
  readonly frames: string[] = [];
  constructor(
    readonly name: string,
    readonly network: Network,
  ) {}
  enqueue(buf: Buffer, offset: number, length: number): void {
    this.frames.push(Buffer.from(buf.subarray(offset, offset + length)).toString("hex"));
  }
  flush(): void {}
}

type OverlayCall =
  | { kind: "unicast"; src: number; dst: number; vlan: number; frame: string }
  | { kind: "flood"; src: number; vlan: number; frame: string };

class FakeOverlay implements Overlay {
  readonly calls: OverlayCall[] = [];
  readonly kernelPeers = new Set<number>();
  kernelDelivered(src: number): boolean {
    return this.kernelPeers.has(src);
  }
  unicast(src: number, dst: number, vlan: number, buf: Buffer, offset: number, length: number) {
    const f = Buffer.from(buf.subarray(offset, offset + length)).toString("hex");
    this.calls.push({ kind: "unicast", src, dst, vlan, frame: f });
  }
  flood(src: number, vlan: number, buf: Buffer, offset: number, length: number) {
    const f = Buffer.from(buf.subarray(offset, offset + length)).toString("hex");
    this.calls.push({ kind: "flood", src, vlan, frame: f });
  }
}

let counters: Counters;
let networks: NetworkRegistry;
let overlay: FakeOverlay;
let sw: Switch;
let blue: Network;
let d1: FakePort, d2: FakePort, d3: FakePort, b1: FakePort, b2: FakePort;
const BLUE_VLAN = vlanForNetwork("blue");

beforeEach(() => {
  counters = new Counters();
  networks = new NetworkRegistry(64, counters);
  blue = networks.add("blue");
  overlay = new FakeOverlay();
  sw = new Switch(SELF, networks, overlay, counters, MAX_FRAME);
  d1 = new FakePort("d1", networks.defaultNetwork);
  d2 = new FakePort("d2", networks.defaultNetwork);
  d3 = new FakePort("d3", networks.defaultNetwork);
  b1 = new FakePort("b1", blue);
  b2 = new FakePort("b2", blue);
  for (const p of [d1, d2, d3, b1, b2]) sw.addPort(p);
});

const local = (port: FakePort, f: Buffer, now = 0): void => sw.fromLocal(port, f, 0, f.length, now);
const hexOf = (b: Buffer): string => b.toString("hex");

describe("Switch, frames from local ports", () => {
  it("floods broadcast to the other ports of the network and to the overlay, untagged", () => {
    const f = frame(BCAST, M1);
    local(d1, f);
    expect(d1.frames).toEqual([]);
    expect(d2.frames).toEqual([hexOf(f)]);
    expect(d3.frames).toEqual([hexOf(f)]);
    expect(b1.frames).toEqual([]);
    expect(b2.frames).toEqual([]);
    expect(overlay.calls).toEqual([{ kind: "flood", src: SELF, vlan: 0, frame: hexOf(f) }]);
  });

  it("learns the source and then unicasts to the known local port only", () => {
    local(d1, frame(BCAST, M1));
    local(d2, frame(BCAST, M2));
    overlay.calls.length = 0;
    for (const p of [d1, d2, d3]) p.frames.length = 0;
    const f = frame(M1, M2, "0102");
    local(d2, f);
    expect(d1.frames).toEqual([hexOf(f)]);
    expect(d2.frames).toEqual([]);
    expect(d3.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
  });

  it("floods unknown unicast and multicast within the network", () => {
    const unknown = frame(M9, M1);
    local(d1, unknown);
    const multi = frame(MCAST, M1);
    local(d1, multi);
    expect(d2.frames).toEqual([hexOf(unknown), hexOf(multi)]);
    expect(d3.frames).toEqual([hexOf(unknown), hexOf(multi)]);
    expect(overlay.calls.map((c) => c.kind)).toEqual(["flood", "flood"]);
  });

  it("keeps networks apart and floods to the overlay with the network's VLAN id", () => {
    const f = frame(BCAST, M1);
    local(b1, f);
    expect(b2.frames).toEqual([hexOf(f)]);
    for (const p of [d1, d2, d3]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([{ kind: "flood", src: SELF, vlan: BLUE_VLAN, frame: hexOf(f) }]);

    // M1 is known in blue only: a default-network frame to M1 is unknown unicast there
    overlay.calls.length = 0;
    const g = frame(M1, M2);
    local(d1, g);
    expect(b1.frames).toEqual([]);
    expect(d2.frames).toEqual([hexOf(g)]);
    expect(overlay.calls).toEqual([{ kind: "flood", src: SELF, vlan: 0, frame: hexOf(g) }]);
  });

  it("never sends a frame back out of its ingress port", () => {
    local(d1, frame(BCAST, M1));
    d2.frames.length = 0;
    d3.frames.length = 0;
    overlay.calls.length = 0;
    local(d1, frame(M1, M2)); // M1 lives on d1 itself (and M2 now moves to d1 too)
    for (const p of [d1, d2, d3]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
  });

  it("unicasts to the overlay for a MAC learned from a peer, with the VLAN id", () => {
    const fromX = tagged(frame(BCAST, M3), BLUE_VLAN);
    sw.fromOverlay(PEER_X, fromX, 0, fromX.length, 0);
    overlay.calls.length = 0;
    const f = frame(M3, M1);
    local(b1, f);
    expect(overlay.calls).toEqual([
      { kind: "unicast", src: SELF, dst: PEER_X, vlan: BLUE_VLAN, frame: hexOf(f) },
    ]);
    expect(b2.frames).toEqual([hexOf(frame(BCAST, M3))]); // the earlier broadcast, untagged
  });

  it("drops and counts tagged frames on the default network", () => {
    local(d1, tagged(frame(BCAST, M1), 5));
    local(d1, frame(BCAST, M1, "0000", 0x88a8));
    expect(counters.switch_dropped_tagged).toBe(2);
    for (const p of [d2, d3, b1, b2]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
    expect(networks.defaultNetwork.macs.size).toBe(0);
  });

  it("drops and counts oversized frames", () => {
    const big = frame(BCAST, M1, "00".repeat(MAX_FRAME - 14 + 1));
    local(d1, big);
    expect(counters.switch_dropped_oversized).toBe(1);
    expect(d2.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
    const max = frame(BCAST, M1, "00".repeat(MAX_FRAME - 14));
    local(d1, max);
    expect(counters.switch_dropped_oversized).toBe(1);
    expect(d2.frames).toEqual([hexOf(max)]);
  });

  it("ignores runts, group source addresses and STP frames", () => {
    local(d1, frame(BCAST, M1).subarray(0, 13));
    local(d1, frame(BCAST, MCAST));
    local(d1, frame("01:80:c2:00:00:00", M1));
    for (const p of [d2, d3]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
  });

  it("reads frames at an offset inside a larger buffer", () => {
    const f = frame(BCAST, M1);
    const buf = Buffer.concat([Buffer.alloc(7, 0xaa), f, Buffer.alloc(5, 0xbb)]);
    sw.fromLocal(d1, buf, 7, f.length, 0);
    expect(d2.frames).toEqual([hexOf(f)]);
  });

  it("removePort forgets the port and its MACs", () => {
    local(d1, frame(BCAST, M1));
    sw.removePort(d1);
    expect(networks.defaultNetwork.ports).toEqual([d2, d3]);
    expect(networks.defaultNetwork.macs.size).toBe(0);
    d2.frames.length = 0;
    d3.frames.length = 0;
    local(d2, frame(M1, M2));
    expect(d1.frames).toEqual([]);
    expect(d3.frames).toHaveLength(1); // flooded: M1 unknown again
  });

  it("forgetPeer drops MACs learned from that peer", () => {
    const fromX = frame(BCAST, M3);
    sw.fromOverlay(PEER_X, fromX, 0, fromX.length, 0);
    const fromY = frame(BCAST, M9);
    sw.fromOverlay(PEER_Y, fromY, 0, fromY.length, 0);
    sw.forgetPeer(PEER_X);
    overlay.calls.length = 0;
    local(d1, frame(M3, M1));
    local(d1, frame(M9, M1));
    expect(overlay.calls.map((c) => c.kind)).toEqual(["flood", "unicast"]);
  });

  it("ages MACs: after 10 minutes a known destination floods again; sweep removes it", () => {
    local(d1, frame(BCAST, M1), 0);
    d2.frames.length = 0;
    d3.frames.length = 0;
    local(d2, frame(M1, M2), MAC_MAX_AGE_MS);
    expect(d1.frames).toHaveLength(1);
    expect(d3.frames).toHaveLength(0);
    local(d2, frame(M1, M2), MAC_MAX_AGE_MS + 1);
    expect(d3.frames).toHaveLength(1); // flooded
    expect(networks.defaultNetwork.macs.size).toBe(1); // M2 only
    sw.sweep(2 * MAC_MAX_AGE_MS + 2);
    expect(networks.defaultNetwork.macs.size).toBe(0);
  });
});

describe("Switch, frames from the overlay", () => {
  it("delivers untagged frames to the default network and continues the flood", () => {
    const f = frame(BCAST, M3);
    sw.fromOverlay(PEER_X, f, 0, f.length, 0);
    for (const p of [d1, d2, d3]) expect(p.frames).toEqual([hexOf(f)]);
    for (const p of [b1, b2]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([{ kind: "flood", src: PEER_X, vlan: 0, frame: hexOf(f) }]);
    expect(networks.defaultNetwork.macs.lookup(0x020000000003, 0)).toMatchObject({
      port: null,
      peer: PEER_X,
    });
  });

  it("passes on, but does not deliver again, a default-network flood the kernel already delivered", () => {
    overlay.kernelPeers.add(PEER_X);
    const f = frame(BCAST, M3);
    sw.fromOverlay(PEER_X, f, 0, f.length, 0);
    for (const p of [d1, d2, d3]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([{ kind: "flood", src: PEER_X, vlan: 0, frame: hexOf(f) }]);
    // Unicast from that peer still arrives (it came by sleeve because the kernel did not
    // carry it), and so do other networks' floods, which the kernel never carries.
    const u = frame(M9, M3);
    sw.fromOverlay(PEER_X, u, 0, u.length, 0);
    expect(d1.frames).toEqual([hexOf(u)]);
    const blueFlood = tagged(frame(BCAST, M2), BLUE_VLAN);
    sw.fromOverlay(PEER_X, blueFlood, 0, blueFlood.length, 0);
    expect(b1.frames).toHaveLength(1);
  });

  it("delivers 802.1Q frames to that VLAN's network with the tag stripped, flooding on with the tag", () => {
    const inner = frame(BCAST, M3, "45000014");
    const wire = tagged(inner, BLUE_VLAN);
    expect(wire.length).toBe(inner.length + 4);
    sw.fromOverlay(PEER_X, wire, 0, wire.length, 0);
    expect(b1.frames).toEqual([hexOf(inner)]);
    expect(b2.frames).toEqual([hexOf(inner)]);
    for (const p of [d1, d2, d3]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([
      { kind: "flood", src: PEER_X, vlan: 0, frame: hexOf(tagged(inner, BLUE_VLAN)) },
    ]);
    expect(blue.macs.lookup(0x020000000003, 0)).toMatchObject({ port: null, peer: PEER_X });
    expect(networks.defaultNetwork.macs.size).toBe(0);
  });

  it("strips the tag of a frame at an offset, touching nothing outside it", () => {
    const inner = frame(BCAST, M3);
    const wire = tagged(inner, BLUE_VLAN);
    const buf = Buffer.concat([Buffer.alloc(3, 0xaa), wire, Buffer.alloc(3, 0xbb)]);
    sw.fromOverlay(PEER_X, buf, 3, wire.length, 0);
    expect(b1.frames).toEqual([hexOf(inner)]);
    expect(hexOf(buf.subarray(0, 3))).toBe("aaaaaa");
    expect(hexOf(buf.subarray(3 + wire.length))).toBe("bbbbbb");
  });

  it("ignores the priority bits of the tag", () => {
    const inner = frame(BCAST, M3);
    const wire = tagged(inner, BLUE_VLAN | 0xe000);
    sw.fromOverlay(PEER_X, wire, 0, wire.length, 0);
    expect(b1.frames).toEqual([hexOf(inner)]);
  });

  it("counts frames for an unknown VLAN and delivers them nowhere locally", () => {
    let unknownVlan = 1;
    while (networks.byVlan(unknownVlan) !== undefined) unknownVlan++;
    const wire = tagged(frame(BCAST, M3), unknownVlan);
    sw.fromOverlay(PEER_X, wire, 0, wire.length, 0);
    expect(counters.switch_unknown_network).toBe(1);
    for (const p of [d1, d2, d3, b1, b2]) expect(p.frames).toEqual([]);
    // still relayed along the source's tree, unchanged
    expect(overlay.calls).toEqual([{ kind: "flood", src: PEER_X, vlan: 0, frame: hexOf(wire) }]);
  });

  it("delivers to one port, without continuing the flood, when the destination is local", () => {
    local(b1, frame(BCAST, M1));
    b2.frames.length = 0;
    overlay.calls.length = 0;
    const inner = frame(M1, M3);
    const wire = tagged(inner, BLUE_VLAN);
    sw.fromOverlay(PEER_X, wire, 0, wire.length, 0);
    expect(b1.frames).toEqual([hexOf(inner)]);
    expect(b2.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
  });

  it("does not deliver locally a frame for a MAC known at another peer, but floods it on", () => {
    const fromY = frame(BCAST, M9);
    sw.fromOverlay(PEER_Y, fromY, 0, fromY.length, 0);
    for (const p of [d1, d2, d3]) p.frames.length = 0;
    overlay.calls.length = 0;
    const f = frame(M9, M3);
    sw.fromOverlay(PEER_X, f, 0, f.length, 0);
    for (const p of [d1, d2, d3]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([{ kind: "flood", src: PEER_X, vlan: 0, frame: hexOf(f) }]);
  });

  it("the same MAC in two networks is two separate entries", () => {
    const inBlue = tagged(frame(BCAST, M3), BLUE_VLAN);
    sw.fromOverlay(PEER_X, inBlue, 0, inBlue.length, 0);
    const inDefault = frame(BCAST, M3);
    sw.fromOverlay(PEER_Y, inDefault, 0, inDefault.length, 0);
    expect(blue.macs.lookup(0x020000000003, 0)?.peer).toBe(PEER_X);
    expect(networks.defaultNetwork.macs.lookup(0x020000000003, 0)?.peer).toBe(PEER_Y);
  });

  it("drops and counts overlay frames larger than a local endpoint may receive", () => {
    const max = frame(BCAST, M3, "00".repeat(MAX_FRAME - 14));
    sw.fromOverlay(PEER_X, max, 0, max.length, 0);
    expect(d1.frames).toHaveLength(1);
    const over = frame(BCAST, M3, "00".repeat(MAX_FRAME - 14 + 1));
    sw.fromOverlay(PEER_X, over, 0, over.length, 0);
    expect(counters.switch_dropped_oversized).toBe(1);
    expect(d1.frames).toHaveLength(1);
    // a tagged frame may be 4 bytes longer: the tag is stripped before delivery
    const taggedMax = tagged(max, BLUE_VLAN);
    sw.fromOverlay(PEER_X, taggedMax, 0, taggedMax.length, 0);
    expect(b1.frames).toEqual([hexOf(max)]);
    const taggedOver = tagged(over, BLUE_VLAN);
    sw.fromOverlay(PEER_X, taggedOver, 0, taggedOver.length, 0);
    expect(counters.switch_dropped_oversized).toBe(2);
    expect(b1.frames).toHaveLength(1);
  });

  it("ignores runts and truncated tags", () => {
    const f = frame(BCAST, M3);
    sw.fromOverlay(PEER_X, f, 0, 13, 0);
    const t = tagged(f, BLUE_VLAN);
    sw.fromOverlay(PEER_X, t, 0, 17, 0);
    for (const p of [d1, d2, d3, b1, b2]) expect(p.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
  });
});

describe("Switch, properties", () => {
  const mac = fc.oneof(
    fc.constantFrom(BCAST, MCAST, M1, M2, M3, M9).map(macBytes),
    fc.uint8Array({ minLength: 6, maxLength: 6 }).map((b) => Buffer.from(b)),
  );

  it("keeps the MAC table bounded under a stream of random source MACs", () => {
    fc.assert(
      fc.property(fc.array(mac, { maxLength: 300 }), (sources) => {
        const c = new Counters();
        const reg = new NetworkRegistry(16, c);
        const port = new FakePort("p", reg.defaultNetwork);
        const s = new Switch(SELF, reg, new FakeOverlay(), c, MAX_FRAME);
        s.addPort(port);
        const learned = new Set<string>();
        sources.forEach((src, i) => {
          const f = Buffer.concat([macBytes(BCAST), src, Buffer.from([8, 0, i & 0xff])]);
          s.fromLocal(port, f, 0, f.length, i);
          if ((src[0]! & 1) === 0) learned.add(src.toString("hex"));
          expect(reg.defaultNetwork.macs.size).toBeLessThanOrEqual(16);
        });
        expect(reg.defaultNetwork.macs.size).toBe(Math.min(16, learned.size));
        expect(c.mac_evictions).toBe(Math.max(0, learned.size - 16));
      }),
      { numRuns: 200 },
    );
  });

  it("delivers an overlay frame only to the network its tag names, tag stripped", () => {
    const vlans = fc.constantFrom<number | undefined>(
      undefined,
      0,
      BLUE_VLAN,
      4095,
      7,
      BLUE_VLAN ^ 1,
    );
    const input = fc.tuple(mac, mac, vlans, fc.uint8Array({ maxLength: 30 }), fc.nat(3));
    fc.assert(
      fc.property(fc.array(input, { maxLength: 20 }), (frames) => {
        for (const p of [d1, d2, d3, b1, b2]) p.frames.length = 0;
        for (const [dst, src, vlan, payload, cut] of frames) {
          const inner = Buffer.concat([dst, src, Buffer.from([0x08, 0x00]), payload]);
          const wire = vlan === undefined ? inner : tagged(inner, vlan);
          const before = [d1, d2, d3, b1, b2].map((p) => p.frames.length);
          const length = Math.max(0, wire.length - cut);
          expect(() => sw.fromOverlay(PEER_X, Buffer.from(wire), 0, length, 0)).not.toThrow();
          const target =
            vlan === undefined || vlan === 0 ? "default" : vlan === BLUE_VLAN ? "blue" : "";
          [d1, d2, d3, b1, b2].forEach((p, i) => {
            const got = p.frames.slice(before[i]);
            if (p.network.name !== target) expect(got, p.name).toEqual([]);
            for (const g of got) {
              const expected = vlan === undefined || vlan === 0 ? wire : inner;
              const want = expected.subarray(0, length - (wire.length - expected.length));
              expect(g).toBe(want.toString("hex"));
            }
          });
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("Switch with a policy filter", () => {
  /** Drops frames whose payload starts with 0xdd; records what it judged. */
  class PayloadFilter {
    readonly judged: string[] = [];
    checkFrame(buf: Buffer, offset: number, length: number): boolean {
      this.judged.push(Buffer.from(buf.subarray(offset, offset + length)).toString("hex"));
      return buf[offset + 14] !== 0xdd;
    }
  }

  it("judges local frames before anything leaves, and drops what it refuses", () => {
    const filter = new PayloadFilter();
    sw.setFilter(filter);
    local(d1, frame(BCAST, M1, "dd00"));
    expect(d2.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
    expect(counters.switch_policy_dropped).toBe(1);
    const ok = frame(BCAST, M1, "0100");
    local(d1, ok);
    expect(d2.frames).toEqual([hexOf(ok)]);
    expect(filter.judged).toHaveLength(2);
  });

  it("judges overlay frames only on their way to local ports: the flood goes on regardless", () => {
    sw.setFilter(new PayloadFilter());
    const denied = frame(BCAST, M9, "dd00");
    sw.fromOverlay(PEER_X, denied, 0, denied.length, 0);
    expect(overlay.calls).toEqual([{ kind: "flood", src: PEER_X, vlan: 0, frame: hexOf(denied) }]);
    expect(d1.frames).toEqual([]);
    expect(counters.switch_policy_dropped).toBe(1);
    // A frame for a MAC known at another peer is not ours to judge at all.
    local(d1, frame(BCAST, M1));
    const elsewhere = frame(BCAST, M3);
    sw.fromOverlay(PEER_Y, elsewhere, 0, elsewhere.length, 0);
    const filter = new PayloadFilter();
    sw.setFilter(filter);
    const toY = frame(M3, M9, "dd00");
    sw.fromOverlay(PEER_X, toY, 0, toY.length, 0);
    expect(filter.judged).toEqual([]);
  });

  it("without a filter nothing is judged", () => {
    sw.setFilter(undefined);
    const f = frame(BCAST, M1, "dd00");
    local(d1, f);
    expect(d2.frames).toEqual([hexOf(f)]);
    expect(counters.switch_policy_dropped).toBe(0);
  });
});

describe("Switch with a guarded port", () => {
  it("drops and counts what the port's guard refuses, before learning anything from it", () => {
    const guarded = Object.assign(new FakePort("g1", networks.defaultNetwork), {
      guard: { permits: (buf: Buffer, offset: number) => buf[offset + 14] !== 0xdd },
    });
    sw.addPort(guarded);
    sw.fromLocal(guarded, frame(BCAST, M9, "dd00"), 0, 16, 0);
    expect(d1.frames).toEqual([]);
    expect(overlay.calls).toEqual([]);
    expect(counters.switch_spoof_dropped).toBe(1);
    // M9 was not learned behind the guarded port: a frame for it still floods.
    local(d1, frame(M9, M1));
    expect(d2.frames).toHaveLength(1);
  });
});
