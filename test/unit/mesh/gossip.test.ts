import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type GossipData,
  GossipLayer,
  type GossipLayerOptions,
  type GossipRoutes,
  type GossipTransport,
  type Gossiper,
  chooseRandomNeighbours,
  fnv64a,
} from "../../../src/mesh/gossip.js";
import { Routes, type TopologyView } from "../../../src/mesh/routes.js";
import { Counters } from "../../../src/util/counters.js";
import { Logger } from "../../../src/util/log.js";
import {
  decodeBroadcast,
  decodeGossip,
  encodeBroadcast,
  encodeGossip,
  encodeUnicast,
} from "../../../src/wire/gossip-envelope.js";
import type { PeerName } from "../../../src/wire/peer-name.js";

// --- fakes ---

interface Sent {
  to: PeerName;
  tag: number;
  body: Uint8Array;
}

class FakeTransport implements GossipTransport {
  sent: Sent[] = [];
  backed = new Set<PeerName>();
  constructor(public neighbours: PeerName[] = []) {}
  send(to: PeerName, tag: number, body: Uint8Array): void {
    this.sent.push({ to, tag, body });
  }
  backedUp(n: PeerName): boolean {
    return this.backed.has(n);
  }
  connectedNeighbours(): PeerName[] {
    return this.neighbours;
  }
  take(): Sent[] {
    const out = this.sent;
    this.sent = [];
    return out;
  }
}

class FakeRoutes implements GossipRoutes {
  table = new Map<PeerName, PeerName>();
  hops = new Map<PeerName, PeerName[]>();
  unicastNextHop(dst: PeerName): PeerName | undefined {
    return this.table.get(dst);
  }
  broadcastNextHops(src: PeerName): readonly PeerName[] {
    return this.hops.get(src) ?? [];
  }
  unicastTable(): Map<PeerName, PeerName> {
    return new Map(this.table);
  }
}

/** A grow-only set of uint32s; payload = 4 bytes big-endian per item. */
class SetData implements GossipData {
  constructor(readonly items: ReadonlySet<number>) {}
  static of(...items: number[]): SetData {
    return new SetData(new Set(items));
  }
  merge(other: GossipData): GossipData {
    return new SetData(new Set([...this.items, ...(other as SetData).items]));
  }
  encode(): Uint8Array[] {
    const out = new Uint8Array(this.items.size * 4);
    const view = new DataView(out.buffer);
    [...this.items].sort((a, b) => a - b).forEach((v, i) => view.setUint32(i * 4, v));
    return [out];
  }
}

function decodeSet(payload: Uint8Array): number[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 4 <= payload.length; i += 4) out.push(view.getUint32(i));
  return out;
}

class SetGossiper implements Gossiper {
  readonly state = new Set<number>();
  unicasts: [PeerName, number[]][] = [];
  broadcasts: [PeerName, number[]][] = [];
  gossips: [PeerName, number[]][] = [];

  private learn(payload: Uint8Array): GossipData | undefined {
    const fresh = decodeSet(payload).filter((v) => !this.state.has(v));
    for (const v of fresh) this.state.add(v);
    return fresh.length > 0 ? new SetData(new Set(fresh)) : undefined;
  }
  onGossip(src: PeerName, payload: Uint8Array): GossipData | undefined {
    this.gossips.push([src, decodeSet(payload)]);
    return this.learn(payload);
  }
  onUnicast(src: PeerName, payload: Uint8Array): void {
    this.unicasts.push([src, decodeSet(payload)]);
  }
  onBroadcast(src: PeerName, payload: Uint8Array): GossipData | undefined {
    this.broadcasts.push([src, decodeSet(payload)]);
    return this.learn(payload);
  }
  fullState(): GossipData | undefined {
    return this.state.size > 0 ? new SetData(new Set(this.state)) : undefined;
  }
}

const quietLog = (): Logger => new Logger("error", { write: () => {} });
const setBytes = (...items: number[]): Uint8Array => SetData.of(...items).encode()[0]!;

const SELF = 1;

function setup(options: Partial<GossipLayerOptions> = {}) {
  const transport = new FakeTransport([2, 3, 4, 5]);
  const routes = new FakeRoutes();
  for (const n of [2, 3, 4, 5]) routes.table.set(n, n);
  const counters = new Counters();
  const layer = new GossipLayer(SELF, transport, routes, {
    counters,
    log: quietLog(),
    random: () => 0,
    ...options,
  });
  const gossiper = new SetGossiper();
  layer.register("set", gossiper);
  return { transport, routes, counters, layer, gossiper };
}

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

afterEach(() => {
  vi.useRealTimers();
});

// --- tests ---

describe("FNV-64a", () => {
  const reference = (data: Uint8Array): bigint => {
    let h = 0xcbf29ce484222325n;
    for (const b of data) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
    return h;
  };

  it("matches the published values and a BigInt reference", () => {
    expect(fnv64a(new Uint8Array(0))).toBe(0xcbf29ce484222325n);
    expect(fnv64a(new TextEncoder().encode("a"))).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv64a(new TextEncoder().encode("foobar"))).toBe(0x85944171f73967e8n);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (d) => {
        expect(fnv64a(d)).toBe(reference(d));
      }),
    );
  });
});

describe("random neighbours", () => {
  const table = (entries: [number, number][]) => new Map(entries);
  const none = new Set<number>();

  it("picks trunc(min(2·log2(entries incl. ourselves), distinct next hops))", () => {
    expect(chooseRandomNeighbours(table([]), SELF, none, Math.random)).toEqual([]);
    // one neighbour: 2 entries with ourselves, 2·log2(2) = 2, one next hop
    expect(chooseRandomNeighbours(table([[2, 2]]), SELF, none, Math.random)).toEqual([2]);
    // three neighbours: 2·log2(4) = 4, three next hops -> all of them
    const three = table([
      [2, 2],
      [3, 3],
      [4, 4],
    ]);
    expect(chooseRandomNeighbours(three, SELF, none, Math.random).sort()).toEqual([2, 3, 4]);
    // 8 direct neighbours: 2·log2(9) = 6.34 -> 6
    const star = table([2, 3, 4, 5, 6, 7, 8, 9].map((n) => [n, n]));
    expect(chooseRandomNeighbours(star, SELF, none, Math.random)).toHaveLength(6);
    // 31 direct neighbours: 2·log2(32) = 10
    const big = table(Array.from({ length: 31 }, (_, i) => [i + 2, i + 2]));
    const chosen = chooseRandomNeighbours(big, SELF, none, Math.random);
    expect(chosen).toHaveLength(10);
    expect(new Set(chosen).size).toBe(10); // without replacement
  });

  it("ignores an entry for ourselves and never picks an excluded hop", () => {
    const t = table([
      [SELF, SELF],
      [2, 2],
      [3, 3],
      [4, 3],
    ]);
    // entries: ourselves + 2, 3, 4 = 4 -> 2·log2(4) = 4; hops other than 3: just 2
    expect(chooseRandomNeighbours(t, SELF, new Set([3]), Math.random)).toEqual([2]);
    expect(chooseRandomNeighbours(t, SELF, new Set([2, 3]), Math.random)).toEqual([]);
  });

  it("weights each next hop by the destinations routed through it", () => {
    // hop 2 carries 3 destinations (points 0..2), hop 9 one (point 3)
    const t = table([
      [2, 2],
      [3, 2],
      [4, 2],
      [9, 9],
    ]);
    const seq = (...values: number[]) => {
      let i = 0;
      return () => values[i++]!;
    };
    expect(chooseRandomNeighbours(t, SELF, none, seq(0.7, 0))).toEqual([2, 9]);
    expect(chooseRandomNeighbours(t, SELF, none, seq(0.8, 0))).toEqual([9, 2]);
    expect(chooseRandomNeighbours(t, SELF, none, seq(0.999999, 0.5))).toEqual([9, 2]);

    // statistically, with n = 1 (exclude nothing, but only the first pick matters)
    const random = prng(7);
    let firstIsHeavy = 0;
    const runs = 4000;
    for (let i = 0; i < runs; i++) {
      if (chooseRandomNeighbours(t, SELF, none, random)[0] === 2) firstIsHeavy++;
    }
    expect(firstIsHeavy / runs).toBeGreaterThan(0.7);
    expect(firstIsHeavy / runs).toBeLessThan(0.8);
  });
});

describe("receive rules", () => {
  it("tag 4: relays what was new, as from us, to random neighbours other than the sender", () => {
    const { transport, layer, gossiper, counters } = setup();
    gossiper.state.add(10);
    layer.handle(2, 4, encodeGossip({ channel: "set", src: 2, payload: setBytes(10, 11, 12) }));
    expect(gossiper.gossips).toEqual([[2, [10, 11, 12]]]);
    const sent = transport.take();
    // 5 entries (with us) -> 2·log2(5) = 4.6; hops other than 2: 3, 4, 5
    expect(sent.map((s) => s.to).sort()).toEqual([3, 4, 5]);
    for (const s of sent) {
      expect(s.tag).toBe(4);
      expect(decodeGossip(s.body)).toEqual({
        channel: "set",
        src: SELF,
        payload: setBytes(11, 12),
      });
    }
    expect(counters.gossip_tx_messages).toBe(3);
  });

  it("tag 4: relays nothing when nothing is new", () => {
    const { transport, layer, gossiper } = setup();
    gossiper.state.add(10);
    layer.handle(2, 4, encodeGossip({ channel: "set", src: 2, payload: setBytes(10) }));
    expect(gossiper.gossips).toHaveLength(1);
    expect(transport.sent).toEqual([]);
  });

  it("tag 5: delivers to us, forwards others' unchanged, drops the unroutable", () => {
    const { transport, routes, layer, gossiper, counters } = setup();
    routes.table.set(9, 4);
    layer.handle(2, 5, encodeUnicast({ channel: "set", src: 7, dst: SELF, payload: setBytes(5) }));
    expect(gossiper.unicasts).toEqual([[7, [5]]]);
    expect(transport.sent).toEqual([]);

    // For peer 9 (next hop 4): original body, byte for byte, including on unknown channels.
    for (const channel of ["set", "IPallocation"]) {
      const body = encodeUnicast({ channel, src: 7, dst: 9, payload: setBytes(6) });
      layer.handle(2, 5, body);
      expect(transport.take()).toEqual([{ to: 4, tag: 5, body }]);
    }
    expect(gossiper.unicasts).toHaveLength(1);

    layer.handle(2, 5, encodeUnicast({ channel: "set", src: 7, dst: 99, payload: setBytes(6) }));
    expect(transport.sent).toEqual([]);
    expect(counters.gossip_unicast_unroutable).toBe(1);
  });

  it("tag 5 to us on an unknown channel is dropped and counted", () => {
    const { transport, layer, counters } = setup();
    layer.handle(
      2,
      5,
      encodeUnicast({ channel: "nameserver", src: 7, dst: SELF, payload: setBytes(1) }),
    );
    expect(transport.sent).toEqual([]);
    expect(counters.gossip_surrogate_unicast_dropped).toBe(1);
  });

  it("tag 6: delivers, then relays what is new along the broadcast hops with the original src", () => {
    const { transport, routes, layer, gossiper } = setup();
    routes.hops.set(7, [3, 5]);
    gossiper.state.add(1);
    layer.handle(2, 6, encodeBroadcast({ channel: "set", src: 7, payload: setBytes(1, 2) }));
    expect(gossiper.broadcasts).toEqual([[7, [1, 2]]]);
    const sent = transport.take();
    expect(sent.map((s) => s.to)).toEqual([3, 5]);
    for (const s of sent) {
      expect(s.tag).toBe(6);
      expect(decodeBroadcast(s.body)).toEqual({ channel: "set", src: 7, payload: setBytes(2) });
    }
    // nothing new: nothing relayed
    layer.handle(3, 6, encodeBroadcast({ channel: "set", src: 7, payload: setBytes(2) }));
    expect(transport.sent).toEqual([]);
  });

  it("tag 6: our own broadcast coming back is dropped", () => {
    const { transport, routes, layer, gossiper, counters } = setup();
    routes.hops.set(SELF, [2, 3]);
    layer.handle(2, 6, encodeBroadcast({ channel: "set", src: SELF, payload: setBytes(1) }));
    expect(gossiper.broadcasts).toEqual([]);
    expect(transport.sent).toEqual([]);
    expect(counters.gossip_rx_own_broadcast).toBe(1);
  });

  it("does not send to next hops that are not connected", () => {
    const { transport, routes, layer } = setup();
    routes.hops.set(7, [3, 42]);
    layer.handle(2, 6, encodeBroadcast({ channel: "set", src: 7, payload: setBytes(1) }));
    expect(transport.take().map((s) => s.to)).toEqual([3]);
    routes.table.set(50, 42);
    const body = encodeUnicast({ channel: "set", src: 7, dst: 50, payload: setBytes(1) });
    layer.handle(2, 5, body);
    expect(transport.sent).toEqual([]);
  });

  it("counts gossiper exceptions without throwing", () => {
    const { transport, layer, counters } = setup();
    const bad: Gossiper = {
      onGossip: () => {
        throw new Error("boom");
      },
      onUnicast: () => {
        throw new Error("boom");
      },
      onBroadcast: () => {
        throw new Error("boom");
      },
      fullState: () => {
        throw new Error("boom");
      },
    };
    layer.register("bad", bad);
    layer.handle(2, 4, encodeGossip({ channel: "bad", src: 2, payload: setBytes(1) }));
    layer.handle(2, 5, encodeUnicast({ channel: "bad", src: 2, dst: SELF, payload: setBytes(1) }));
    layer.handle(2, 6, encodeBroadcast({ channel: "bad", src: 2, payload: setBytes(1) }));
    layer.newConnection(3);
    expect(counters.gossip_handler_errors).toBe(4);
    expect(transport.sent).toEqual([]);
  });

  it("counts malformed bodies and wrong tags", () => {
    const { layer, counters, transport } = setup();
    layer.handle(2, 4, new Uint8Array([1, 2, 3]));
    layer.handle(2, 5, encodeGossip({ channel: "set", src: 2, payload: setBytes(1) }));
    layer.handle(2, 0, new Uint8Array(0));
    expect(counters.gossip_rx_malformed).toBe(3);
    expect(transport.sent).toEqual([]);
  });

  it("never throws on arbitrary input", () => {
    const { layer, routes } = setup({ random: prng(3) });
    routes.hops.set(2, [3, 4]);
    routes.table.set(9, 3);
    const channel = fc.constantFrom("set", "IPallocation", "topology");
    const name = fc.constantFrom(1, 2, 3, 9, 77);
    const valid = fc.oneof(
      fc
        .tuple(channel, name, fc.uint8Array({ maxLength: 12 }))
        .map(([c, s, p]) => [4, encodeGossip({ channel: c, src: s, payload: p })] as const),
      fc
        .tuple(channel, name, name, fc.uint8Array({ maxLength: 12 }))
        .map(
          ([c, s, d, p]) => [5, encodeUnicast({ channel: c, src: s, dst: d, payload: p })] as const,
        ),
      fc
        .tuple(channel, name, fc.uint8Array({ maxLength: 12 }))
        .map(([c, s, p]) => [6, encodeBroadcast({ channel: c, src: s, payload: p })] as const),
    );
    const mutated = fc
      .tuple(
        valid,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      )
      .map(([[tag, body], edits]) => {
        const b = body.slice();
        for (const [at, v] of edits) b[at % b.length] = v;
        return [tag, b] as const;
      });
    const arbitrary = fc.tuple(fc.integer({ min: 0, max: 8 }), fc.uint8Array({ maxLength: 60 }));
    fc.assert(
      fc.property(
        fc.oneof(valid, mutated, arbitrary),
        fc.constantFrom(2, 3, 4),
        ([tag, body], from) => {
          layer.handle(from, tag, body);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe("surrogate (unknown channels)", () => {
  it("relays new gossip to random neighbours other than the sender, payload verbatim, once", () => {
    let now = 1000;
    const { transport, layer, counters } = setup({ now: () => now, dedupIntervalMs: 30_000 });
    const body = encodeGossip({ channel: "IPallocation", src: 2, payload: setBytes(1, 2) });
    layer.handle(2, 4, body);
    const sent = transport.take();
    expect(sent.map((s) => s.to).sort()).toEqual([3, 4, 5]);
    for (const s of sent) {
      expect(s.tag).toBe(4);
      expect(decodeGossip(s.body)).toEqual({
        channel: "IPallocation",
        src: SELF,
        payload: setBytes(1, 2),
      });
    }
    // the same payload again, from anyone: a duplicate
    layer.handle(3, 4, encodeGossip({ channel: "IPallocation", src: 3, payload: setBytes(1, 2) }));
    expect(transport.sent).toEqual([]);
    expect(counters.gossip_surrogate_duplicates).toBe(1);
    // the same payload on another channel is different gossip
    layer.handle(2, 4, encodeGossip({ channel: "nameserver", src: 2, payload: setBytes(1, 2) }));
    expect(transport.take()).toHaveLength(3);
    // after one interval it is forgotten
    now += 30_000;
    layer.handle(2, 4, body);
    expect(transport.take()).toHaveLength(3);
    expect(counters.gossip_rx_surrogate).toBe(4);
  });

  it("bounds its memory, forgetting the oldest first", () => {
    const { transport, layer } = setup({ maxSurrogateCacheBytes: 3 * (400 + 64 + 12) });
    const payload = (i: number) => new Uint8Array(400).fill(i);
    const send = (i: number) => {
      layer.handle(2, 4, encodeGossip({ channel: "IPallocation", src: 2, payload: payload(i) }));
      return transport.take().length;
    };
    expect([send(1), send(2), send(3)]).toEqual([3, 3, 3]);
    expect(send(3)).toBe(0); // remembered
    expect(layer.surrogateMemorySize).toBe(3);
    expect(send(4)).toBe(3); // evicts 1
    expect(layer.surrogateMemorySize).toBe(3);
    expect(send(2)).toBe(0);
    expect(send(1)).toBe(3); // was evicted: relayed again
  });

  it("relays broadcasts verbatim along the broadcast hops of their source", () => {
    const { transport, routes, layer, counters } = setup();
    // A Go-valid but non-canonical body: src 0xbbccddee07 sent as 6 bytes with a leading zero.
    const src = 0xbbccddee07;
    const canonical = encodeBroadcast({ channel: "nameserver", src, payload: setBytes(1) });
    const srcMessage = [0x08, 0x06, 0x00, 0xfb, 0xbb, 0xcc, 0xdd, 0xee, 0x07];
    expect([...canonical.subarray(14, 23)]).toEqual(srcMessage);
    const body = new Uint8Array(canonical.length + 1);
    body.set(canonical.subarray(0, 14));
    body.set([0x09, 0x06, 0x00, 0xfa, 0x00, 0xbb, 0xcc, 0xdd, 0xee, 0x07], 14);
    body.set(canonical.subarray(23), 24);
    expect(decodeBroadcast(body).src).toBe(src);
    routes.hops.set(src, [3, 4]);
    layer.handle(2, 6, body);
    expect(transport.take()).toEqual([
      { to: 3, tag: 6, body },
      { to: 4, tag: 6, body },
    ]);
    expect(counters.gossip_rx_surrogate).toBe(1);
  });
});

describe("sending", () => {
  it("relays reach the neighbours that can hear only from us, besides the random choice", () => {
    const neighbours = [2, 3, 4, 5, 6, 7, 8, 9];
    const send = (mustHear?: () => readonly number[]): number[] => {
      const { transport, routes, layer } = setup(mustHear ? { mustHear } : {});
      transport.neighbours = neighbours;
      for (const n of neighbours) routes.table.set(n, n);
      layer.gossip("set", SetData.of(1));
      return transport.take().map((m) => m.to);
    };
    // 9 table entries (us included): 6 of the 8 neighbours are drawn.
    const drawn = send();
    expect(drawn).toHaveLength(6);
    const left = neighbours.filter((n) => !drawn.includes(n));
    expect(send(() => left).sort((a, b) => a - b)).toEqual(neighbours);
  });

  it("gossipUnicast goes to the next hop; false without a route", () => {
    const { transport, routes, layer, counters } = setup();
    routes.table.set(9, 3);
    expect(layer.gossipUnicast("set", 9, setBytes(4))).toBe(true);
    expect(transport.take()).toEqual([
      {
        to: 3,
        tag: 5,
        body: encodeUnicast({ channel: "set", src: SELF, dst: 9, payload: setBytes(4) }),
      },
    ]);
    expect(layer.gossipUnicast("set", 10, setBytes(4))).toBe(false);
    expect(layer.gossipUnicast("set", SELF, setBytes(4))).toBe(false);
    expect(counters.gossip_unicast_unroutable).toBe(2);
  });

  it("gossipBroadcast floods along our own broadcast hops", () => {
    const { transport, routes, layer } = setup();
    routes.hops.set(SELF, [2, 3, 4, 5]);
    layer.gossipBroadcast("set", SetData.of(8));
    const sent = transport.take();
    expect(sent.map((s) => s.to)).toEqual([2, 3, 4, 5]);
    expect(decodeBroadcast(sent[0]!.body)).toEqual({
      channel: "set",
      src: SELF,
      payload: setBytes(8),
    });
  });

  it("newConnection queues every channel's full state to that neighbour", () => {
    const { transport, layer, gossiper } = setup();
    const other = new SetGossiper();
    layer.register("other", other);
    gossiper.state.add(1).add(2);
    layer.newConnection(3);
    other.state.add(5);
    layer.newConnection(4);
    expect(transport.take().map((s) => [s.to, decodeGossip(s.body)])).toEqual([
      [3, { channel: "set", src: SELF, payload: setBytes(1, 2) }],
      [4, { channel: "set", src: SELF, payload: setBytes(1, 2) }],
      [4, { channel: "other", src: SELF, payload: setBytes(5) }],
    ]);
  });

  it("start() sends every channel's full state to random neighbours each interval", () => {
    vi.useFakeTimers();
    const { transport, layer, gossiper } = setup({ intervalMs: 30_000 });
    gossiper.state.add(3);
    layer.start();
    vi.advanceTimersByTime(29_999);
    expect(transport.sent).toEqual([]);
    vi.advanceTimersByTime(1);
    // 5 entries -> 4 picks, capped at the 4 next hops
    expect(
      transport
        .take()
        .map((s) => s.to)
        .sort(),
    ).toEqual([2, 3, 4, 5]);
    vi.advanceTimersByTime(30_000);
    expect(transport.take()).toHaveLength(4);
    layer.stop();
    vi.advanceTimersByTime(60_000);
    expect(transport.sent).toEqual([]);
  });
});

describe("coalescing while backed up", () => {
  it("merges pending gossip and per-source broadcasts; gossip drains first", () => {
    const { transport, routes, layer } = setup();
    routes.hops.set(SELF, [3]);
    routes.hops.set(7, [3]);
    routes.hops.set(8, [3]);
    transport.neighbours = [3];
    routes.table = new Map([[3, 3]]);
    transport.backed.add(3);

    layer.gossipBroadcast("set", SetData.of(100));
    layer.handle(2, 6, encodeBroadcast({ channel: "set", src: 7, payload: setBytes(1) }));
    layer.handle(2, 6, encodeBroadcast({ channel: "set", src: 8, payload: setBytes(2) }));
    layer.handle(2, 6, encodeBroadcast({ channel: "set", src: 7, payload: setBytes(3) }));
    layer.gossip("set", SetData.of(10));
    layer.gossip("set", SetData.of(11));
    layer.gossipBroadcast("set", SetData.of(101));
    expect(transport.sent).toEqual([]);
    expect(layer.pending(3)).toEqual({ gossip: 1, broadcasts: 3 });

    transport.backed.delete(3);
    layer.drained(3);
    const sent = transport.take();
    expect(
      sent.map((s) => [s.tag, s.tag === 4 ? decodeGossip(s.body) : decodeBroadcast(s.body)]),
    ).toEqual([
      [4, { channel: "set", src: SELF, payload: setBytes(10, 11) }],
      [6, { channel: "set", src: SELF, payload: setBytes(100, 101) }],
      [6, { channel: "set", src: 7, payload: setBytes(1, 3) }],
      [6, { channel: "set", src: 8, payload: setBytes(2) }],
    ]);
    expect(layer.pending(3)).toEqual({ gossip: 0, broadcasts: 0 });
  });

  it("stops when the socket backs up again and resumes on drained()", () => {
    const { transport, routes, layer } = setup();
    transport.neighbours = [3];
    routes.table = new Map([[3, 3]]);
    routes.hops.set(SELF, [3]);
    transport.backed.add(3);
    layer.gossip("set", SetData.of(1));
    layer.gossipBroadcast("set", SetData.of(2));
    // one message gets out, then the buffer is full again
    const send = transport.send.bind(transport);
    transport.send = (to, tag, body) => {
      send(to, tag, body);
      transport.backed.add(to);
    };
    transport.backed.delete(3);
    layer.drained(3);
    expect(transport.take().map((s) => s.tag)).toEqual([4]);
    expect(layer.pending(3)).toEqual({ gossip: 0, broadcasts: 1 });
    layer.drained(3); // still backed up: nothing
    expect(transport.sent).toEqual([]);
    transport.backed.delete(3);
    layer.drained(3);
    expect(transport.take().map((s) => s.tag)).toEqual([6]);
  });

  it("bounds queued surrogate data per neighbour", () => {
    const { transport, routes, layer, counters } = setup({ maxSurrogateQueueBytes: 1000 });
    transport.neighbours = [3];
    routes.table = new Map([
      [2, 2],
      [3, 3],
    ]);
    transport.backed.add(3);
    for (let i = 0; i < 5; i++) {
      const payload = new Uint8Array(300).fill(i);
      layer.handle(2, 4, encodeGossip({ channel: "IPallocation", src: 2, payload }));
    }
    expect(counters.gossip_surrogate_queue_dropped).toBe(2);
    transport.backed.delete(3);
    layer.drained(3);
    expect(transport.take().map((s) => decodeGossip(s.body).payload[0])).toEqual([0, 1, 2]);
  });

  it("connectionClosed forgets the queue", () => {
    const { transport, layer } = setup();
    transport.backed.add(3);
    layer.newConnection(3);
    layer.gossip("set", SetData.of(1));
    layer.connectionClosed(3);
    expect(layer.pending(3)).toEqual({ gossip: 0, broadcasts: 0 });
  });
});

// --- simulation ---

interface SimPeer {
  layer: GossipLayer;
  gossiper: SetGossiper;
}

class Mesh {
  readonly peers = new Map<PeerName, SimPeer>();
  readonly queue: { from: PeerName; to: PeerName; tag: number; body: Uint8Array }[] = [];
  messages = 0;

  constructor(names: PeerName[], edges: [PeerName, PeerName][], random: () => number) {
    const adj = new Map<PeerName, PeerName[]>(names.map((n) => [n, []]));
    for (const [a, b] of edges) {
      adj.get(a)!.push(b);
      adj.get(b)!.push(a);
    }
    const topology: TopologyView = { neighbours: (p) => adj.get(p) ?? [] };
    for (const name of names) {
      const r = new Routes(name);
      r.recompute(topology);
      const transport: GossipTransport = {
        send: (to, tag, body) => {
          this.messages++;
          this.queue.push({ from: name, to, tag, body });
        },
        backedUp: () => false,
        connectedNeighbours: () => adj.get(name)!,
      };
      const layer = new GossipLayer(name, transport, r, {
        counters: new Counters(),
        log: quietLog(),
        random,
      });
      const gossiper = new SetGossiper();
      layer.register("set", gossiper);
      this.peers.set(name, { layer, gossiper });
    }
  }

  run(): void {
    for (let steps = 0; this.queue.length > 0; steps++) {
      if (steps > 1_000_000) throw new Error("gossip does not quiesce");
      const m = this.queue.shift()!;
      this.peers.get(m.to)!.layer.handle(m.from, m.tag, m.body);
    }
  }

  converged(items: number): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.gossiper.state.size === items) n++;
    return n;
  }
}

function randomConnectedGraph(n: number, extra: number, random: () => number) {
  const names = Array.from({ length: n }, (_, i) => 0x0a0000000000 + i * 7919);
  const edges: [number, number][] = [];
  const has = new Set<string>();
  const add = (a: number, b: number) => {
    const key = a < b ? `${a}-${b}` : `${b}-${a}`;
    if (a === b || has.has(key)) return;
    has.add(key);
    edges.push([a, b]);
  };
  for (let i = 1; i < n; i++) add(names[i]!, names[Math.floor(random() * i)]!);
  while (edges.length < n - 1 + extra) {
    add(names[Math.floor(random() * n)]!, names[Math.floor(random() * n)]!);
  }
  return { names, edges };
}

describe("simulation: 30 peers on a random connected graph", () => {
  it("new data from one peer reaches all by relays alone, with few messages", () => {
    const random = prng(42);
    const { names, edges } = randomConnectedGraph(30, 15, random);
    const mesh = new Mesh(names, edges, random);
    const origin = mesh.peers.get(names[0]!)!;
    const items = Array.from({ length: 50 }, (_, i) => i + 1);
    for (const v of items) origin.gossiper.state.add(v);
    origin.layer.gossip("set", new SetData(new Set(items)));
    mesh.run();
    expect(mesh.converged(items.length)).toBe(30);
    // each peer relays what is new once, to at most 2·log2(30) neighbours
    expect(mesh.messages).toBeLessThan(30 * 10);
    expect(mesh.messages).toBeGreaterThanOrEqual(29);
  });

  it("periodic full-state rounds converge when every peer starts with its own item", () => {
    const random = prng(1234);
    const { names, edges } = randomConnectedGraph(30, 15, random);
    const mesh = new Mesh(names, edges, random);
    names.forEach((name, i) => mesh.peers.get(name)!.gossiper.state.add(i + 1));
    let rounds = 0;
    while (mesh.converged(30) < 30 && rounds < 20) {
      rounds++;
      for (const p of mesh.peers.values()) p.layer.gossipAll();
      mesh.run();
    }
    expect(mesh.converged(30)).toBe(30);
    expect(rounds).toBeLessThanOrEqual(3);
    // each peer passes on each item it learns once, to at most 2·log2(30) neighbours
    expect(mesh.messages).toBeLessThan(30 * 30 * 10);
  });

  it("a broadcast reaches every peer exactly once; a unicast crosses the mesh", () => {
    const random = prng(9);
    const { names, edges } = randomConnectedGraph(30, 20, random);
    const mesh = new Mesh(names, edges, random);
    const src = names[5]!;
    mesh.peers.get(src)!.layer.gossipBroadcast("set", SetData.of(999));
    mesh.run();
    expect(mesh.messages).toBe(29);
    for (const [name, p] of mesh.peers) {
      expect(p.gossiper.broadcasts, `peer ${name}`).toEqual(name === src ? [] : [[src, [999]]]);
    }

    mesh.messages = 0;
    const dst = names[29]!;
    expect(mesh.peers.get(names[0]!)!.layer.gossipUnicast("set", dst, setBytes(7))).toBe(true);
    mesh.run();
    expect(mesh.peers.get(dst)!.gossiper.unicasts).toEqual([[names[0], [7]]]);
    for (const [name, p] of mesh.peers) if (name !== dst) expect(p.gossiper.unicasts).toEqual([]);
  });

  it("unknown channels are relayed by surrogates: a broadcast still reaches everyone once", () => {
    const random = prng(5);
    const { names, edges } = randomConnectedGraph(30, 20, random);
    const mesh = new Mesh(names, edges, random);
    // only the source and two far peers serve "ipam"; everyone else is a surrogate
    const servers = [names[0]!, names[17]!, names[29]!];
    const got = new Map<PeerName, number>();
    for (const s of servers) {
      const g = new SetGossiper();
      const origBroadcast = g.onBroadcast.bind(g);
      g.onBroadcast = (from, payload) => {
        got.set(s, (got.get(s) ?? 0) + 1);
        return origBroadcast(from, payload);
      };
      mesh.peers.get(s)!.layer.register("ipam", g);
    }
    mesh.peers.get(names[0]!)!.layer.gossipBroadcast("ipam", SetData.of(1));
    mesh.run();
    expect(mesh.messages).toBe(29);
    expect(got).toEqual(
      new Map([
        [names[17]!, 1],
        [names[29]!, 1],
      ]),
    );
  });
});
