import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Peers, type PeersOptions, supersedes } from "../../../src/mesh/peers.js";
import { Routes, breadthFirstRoutes } from "../../../src/mesh/routes.js";
import {
  type ConnectionSummary,
  type PeerSummary,
  decodeTopology,
  encodeTopology,
} from "../../../src/wire/topology.js";

// Names where numeric order differs from string order.
const SELF = 0x10;
const OURS: PeersOptions = { name: SELF, nickname: "self", uid: 1000n, shortId: 100 };

function table(options: Partial<PeersOptions> = {}): Peers {
  return new Peers({ ...OURS, ...options });
}

function conn(name: number, established = true, outbound = false): ConnectionSummary {
  return { name, remoteTcpAddr: `10.0.0.${name % 250}:6783`, outbound, established };
}

function peer(
  name: number,
  fields: Partial<Omit<PeerSummary, "connections">> = {},
  connections: ConnectionSummary[] = [],
): PeerSummary {
  return {
    name,
    nickname: `p${name}`,
    uid: BigInt(name) * 7n + 1n,
    version: 1n,
    shortId: name % 4096,
    hasShortId: true,
    connections,
    ...fields,
  };
}

describe("our own entry", () => {
  it("starts at version 1 with our identity and no connections", () => {
    const peers = table();
    expect(peers.ourSummary).toEqual({
      name: SELF,
      nickname: "self",
      uid: 1000n,
      version: 1n,
      shortId: 100,
      hasShortId: true,
      connections: [],
    });
    expect(peers.size).toBe(1);
    expect(peers.peerByShortId(100)).toBe(SELF);
  });

  it("picks a random short id when none is given", () => {
    expect(table({ shortId: undefined, randomInt: () => 77 }).ourSummary.shortId).toBe(77);
  });

  it("rejects a zero UID or an out-of-range short id", () => {
    expect(() => table({ uid: 0n })).toThrow(RangeError);
    expect(() => table({ shortId: 4096 })).toThrow(RangeError);
  });

  it("bumps its version on every connection change, establishment included", () => {
    const peers = table();
    expect(peers.setLocalConnections([conn(1, false)])).toBe(true);
    expect(peers.version).toBe(2n);
    expect(peers.setLocalConnections([conn(1, false)])).toBe(false); // no change, no bump
    expect(peers.version).toBe(2n);
    expect(peers.setLocalEstablished(1)).toBe(true);
    expect(peers.version).toBe(3n);
    expect(peers.ourSummary.connections).toEqual([conn(1, true)]);
    expect(peers.setLocalEstablished(1)).toBe(false);
    expect(peers.addLocalConnection(conn(2, false, true))).toBe(true);
    expect(peers.version).toBe(4n);
    expect(peers.removeLocalConnection(1)).toBe(true);
    expect(peers.removeLocalConnection(1)).toBe(false);
    expect(peers.version).toBe(5n);
    expect(peers.ourSummary.connections).toEqual([conn(2, false, true)]);
  });

  it("gives unknown remotes of local connections a placeholder entry", () => {
    const peers = table();
    peers.addLocalConnection(conn(5, false));
    expect(peers.get(5)).toMatchObject({ uid: 0n, version: 0n, hasShortId: false });
  });
});

describe("merge rule (spec 2.5.2)", () => {
  // [old version, old uid, old has short id, new version, new uid, new has short id, replaced]
  const cases: [number, number, boolean, number, number, boolean, boolean][] = [
    [5, 10, true, 6, 10, true, true], // higher version
    [5, 10, true, 6, 1, false, true], // higher version wins whatever the rest
    [5, 10, true, 4, 99, true, false], // lower version loses whatever the rest
    [5, 10, true, 5, 11, false, true], // equal version, higher uid
    [5, 10, true, 5, 9, true, false], // equal version, lower uid
    [5, 10, false, 5, 10, true, true], // equal version and uid, gains a short id
    [5, 10, true, 5, 10, true, false], // identical
    [5, 10, true, 5, 10, false, false], // loses its short id: not better
    [5, 10, false, 5, 10, false, false], // neither has one
  ];

  it.each(cases)(
    "old (v%i, uid %i, short %s) ← new (v%i, uid %i, short %s): replaced %s",
    (ov, ou, os, nv, nu, ns, replaced) => {
      const peers = table();
      const old = peer(1, { version: BigInt(ov), uid: BigInt(ou), hasShortId: os, shortId: 7 });
      peers.applyUpdate([old]);
      const update = peer(1, {
        version: BigInt(nv),
        uid: BigInt(nu),
        hasShortId: ns,
        shortId: 8,
        nickname: "new",
      });
      const { improved } = peers.applyUpdate([update]);
      expect(improved).toEqual(replaced ? [1] : []);
      expect(peers.get(1)).toEqual(replaced ? update : old);
      expect(supersedes(update, old)).toBe(replaced);
    },
  );

  it("adopts new peers with their connection list and reports them improved", () => {
    const peers = table();
    const a = peer(1, {}, [conn(2), conn(SELF)]); // (entries list connections in name order)
    const b = peer(2, {}, [conn(1)]);
    expect(peers.applyUpdate([a, b])).toEqual({ improved: [1, 2], added: [1, 2], skipped: 0 });
    expect(peers.get(1)).toEqual(a);
    expect(peers.applyUpdate([a, b]).improved).toEqual([]); // nothing new the second time
  });

  it("replaces the whole entry, connections included", () => {
    const peers = table();
    peers.applyUpdate([peer(1, {}, [conn(2), conn(3)])]);
    peers.applyUpdate([peer(1, { version: 2n, nickname: "renamed" }, [conn(3, false)])]);
    expect(peers.get(1)).toMatchObject({ version: 2n, nickname: "renamed" });
    expect(peers.get(1)!.connections).toEqual([conn(3, false)]);
  });

  it("creates placeholders for names seen only in connection lists", () => {
    const peers = table();
    const result = peers.applyUpdate([peer(1, {}, [conn(2), conn(3)]), peer(3)]);
    expect(result.improved).toEqual([1, 3]); // placeholders are not improvements
    expect(result.added.sort()).toEqual([1, 2, 3]);
    expect(peers.get(2)).toEqual({
      name: 2,
      nickname: "",
      uid: 0n,
      version: 0n,
      shortId: 0,
      hasShortId: false,
      connections: [],
    });
    expect(peers.get(3)).toEqual(peer(3)); // its own summary, not a placeholder

    // The real summary replaces the placeholder (higher version, or same version higher uid).
    expect(peers.applyUpdate([peer(2, { version: 0n })]).improved).toEqual([2]);
    expect(peers.get(2)!.nickname).toBe("p2");
  });

  it("merges several summaries of one peer in order", () => {
    const peers = table();
    const r = peers.applyUpdate([peer(1, { version: 3n }), peer(1, { version: 2n }), peer(1)]);
    expect(r.improved).toEqual([1]);
    expect(peers.get(1)!.version).toBe(3n);
  });

  it("keeps one connection per remote name (the last)", () => {
    const peers = table();
    peers.applyUpdate([peer(1, {}, [conn(2, false), conn(2, true)])]);
    expect(peers.get(1)!.connections).toEqual([conn(2, true)]);
  });
});

describe("summaries about ourselves", () => {
  it("another UID with a higher version: we move above it and re-advertise", () => {
    const peers = table();
    const r = peers.applyUpdate([peer(SELF, { uid: 999n, version: 41n }, [conn(7)])]);
    expect(r.improved).toEqual([SELF]);
    expect(peers.version).toBe(42n);
    expect(peers.ourSummary).toMatchObject({ uid: 1000n, nickname: "self", connections: [] });
    expect(peers.has(7)).toBe(false); // no placeholders from a stale self-summary
    expect(peers.stats.foreignSelfSummaries).toBe(1);
  });

  it("another UID with a lower version: re-advertise without a bump", () => {
    const peers = table();
    peers.setLocalConnections([conn(1)]);
    peers.setLocalConnections([conn(1), conn(2)]);
    const r = peers.applyUpdate([peer(SELF, { uid: 1n, version: 1n })]);
    expect(r.improved).toEqual([SELF]);
    expect(peers.version).toBe(3n);
  });

  it("our own summary echoed back changes nothing", () => {
    const peers = table();
    peers.setLocalConnections([conn(1)]);
    expect(peers.applyUpdate([peers.ourSummary]).improved).toEqual([]);
    expect(peers.applyUpdate([{ ...peers.ourSummary, version: 1n }]).improved).toEqual([]);
    expect(peers.version).toBe(2n);
    expect(peers.stats.foreignSelfSummaries).toBe(0);
  });

  it("our UID with another connection list is a lie: ours stays, and moves above it", () => {
    const peers = table();
    peers.setLocalConnections([conn(1)]);
    const lie = { ...peers.ourSummary, connections: [conn(66)] };
    expect(peers.applyUpdate([lie]).improved).toEqual([SELF]);
    expect(peers.version).toBe(3n);
    expect(peers.ourSummary.connections).toEqual([conn(1)]);
    const higher = { ...lie, version: 100n, nickname: "evil", shortId: 5 };
    expect(peers.applyUpdate([higher]).improved).toEqual([SELF]);
    expect(peers.ourSummary).toMatchObject({ version: 101n, nickname: "self", shortId: 100 });
  });

  it("cannot be pushed past 2^64-1", () => {
    const peers = table();
    peers.applyUpdate([peer(SELF, { uid: 1n, version: 2n ** 64n - 1n })]);
    expect(peers.version).toBe(2n ** 64n - 1n);
  });
});

describe("short ids (spec 1.5)", () => {
  it("a lower-named peer with our short id makes us pick a free one and bump", () => {
    const picks = [100, 3, 9];
    const peers = table({ randomInt: () => picks.shift()! });
    peers.applyUpdate([peer(3, { shortId: 3 })]); // 3 is taken by peer 3
    const r = peers.applyUpdate([peer(1, { shortId: 100 })]);
    expect(r.improved).toEqual([1, SELF]);
    expect(peers.ourSummary.shortId).toBe(9); // 100 and 3 were in use
    expect(peers.version).toBe(2n);
    expect(peers.peerByShortId(100)).toBe(1);
    expect(peers.peerByShortId(9)).toBe(SELF);
    expect(peers.stats.shortIdReassignments).toBe(1);
  });

  it("a higher-named peer with our short id leaves ours alone", () => {
    const peers = table({ randomInt: () => 1 });
    const r = peers.applyUpdate([peer(0x20, { shortId: 100 })]);
    expect(r.improved).toEqual([0x20]);
    expect(peers.ourSummary.shortId).toBe(100);
    expect(peers.version).toBe(1n);
    expect(peers.peerByShortId(100)).toBe(SELF);
  });

  it("the lowest name holds a shared id among others; ids follow replacements and GC", () => {
    const peers = table();
    peers.setLocalConnections([conn(0x30)]);
    peers.applyUpdate([
      peer(0x30, {}, [conn(SELF), conn(0x20)]),
      peer(0x20, { shortId: 5 }, [conn(0x30)]),
      peer(0x40, { shortId: 5 }),
    ]);
    expect(peers.peerByShortId(5)).toBe(0x20);
    peers.applyUpdate([peer(0x20, { shortId: 6, version: 2n }, [conn(0x30)])]);
    expect(peers.peerByShortId(5)).toBe(0x40);
    expect(peers.peerByShortId(6)).toBe(0x20);
    expect(peers.garbageCollect()).toEqual([0x40]);
    expect(peers.peerByShortId(5)).toBeUndefined();
  });

  it("a peer without a short id does not collide", () => {
    const peers = table();
    peers.applyUpdate([peer(1, { shortId: 100, hasShortId: false })]);
    expect(peers.ourSummary.shortId).toBe(100);
    expect(peers.peerByShortId(100)).toBe(SELF);
  });
});

describe("garbage collection", () => {
  it("removes peers unreachable over any connection, established or not", () => {
    const peers = table();
    peers.setLocalConnections([conn(1, false)]);
    peers.applyUpdate([
      peer(1, {}, [conn(2, false)]), // reachable: SELF→1→2, none established
      peer(2, {}, []),
      peer(3, {}, [conn(4), conn(1)]), // 3 and 4 point into the mesh, nobody points at them
      peer(4, {}, [conn(3)]),
    ]);
    expect(peers.garbageCollect()).toEqual([3, 4]);
    expect(peers.list().map((p) => p.name)).toEqual([SELF, 1, 2]);
  });

  it("keeps peers referenced by our local connections or retained by the router", () => {
    const peers = table();
    peers.applyUpdate([peer(1), peer(2), peer(3)]);
    peers.setLocalConnections([conn(1)]);
    const entry = peers.retain({ name: 2, nickname: "x", uid: 1n });
    expect(entry).toEqual(peer(2)); // already known: the table's entry is returned
    const fresh = peers.retain({ name: 9, nickname: "nine", uid: 99n, shortId: 9 });
    expect(fresh).toMatchObject({ version: 0n, uid: 99n, hasShortId: true, shortId: 9 });
    expect(peers.garbageCollect()).toEqual([3]);
    peers.release(2);
    peers.release(9);
    expect(peers.garbageCollect()).toEqual([2, 9]);
    peers.setLocalConnections([]);
    expect(peers.garbageCollect()).toEqual([1]);
    expect(peers.size).toBe(1);
  });

  it("never removes ourselves", () => {
    const peers = table();
    expect(peers.garbageCollect()).toEqual([]);
    expect(peers.has(SELF)).toBe(true);
  });
});

describe("topology views (spec 6.3)", () => {
  it("established-symmetric needs both ends established; all takes any listed connection", () => {
    const peers = table();
    peers.setLocalConnections([conn(1, true), conn(2, true), conn(3, false)]);
    peers.applyUpdate([
      peer(1, {}, [conn(SELF, true)]), // symmetric, established both ways
      peer(2, {}, [conn(SELF, false)]), // 2's side not established
      peer(3, {}, [conn(SELF, true)]), // our side not established
      peer(4, {}, [conn(1, true)]), // 1 does not list 4
    ]);
    const sym = peers.topologyView("established-symmetric");
    expect(sym.neighbours(SELF)).toEqual([1]);
    expect(sym.neighbours(1)).toEqual([SELF]);
    expect(sym.neighbours(2)).toEqual([]);
    expect(sym.neighbours(3)).toEqual([]);
    expect(sym.neighbours(4)).toEqual([]);
    expect(sym.neighbours(99)).toEqual([]);

    const all = peers.topologyView("all");
    expect(all.neighbours(SELF)).toEqual([1, 2, 3]);
    expect(all.neighbours(2)).toEqual([SELF]);
    expect(all.neighbours(4)).toEqual([1]);
  });

  it("is a snapshot", () => {
    const peers = table();
    peers.setLocalConnections([conn(1)]);
    const view = peers.topologyView("all");
    peers.setLocalConnections([]);
    expect(view.neighbours(SELF)).toEqual([1]);
  });
});

/** Builds, through gossip, the table of `self` in a mesh of fully established links. */
function meshTable(self: number, edges: [number, number][]): Peers {
  const names = [...new Set(edges.flat())];
  const adj = new Map<number, number[]>(names.map((n) => [n, []]));
  for (const [a, b] of edges) {
    adj.get(a)!.push(b);
    adj.get(b)!.push(a);
  }
  const peers = new Peers({ name: self, nickname: "me", uid: 5n, shortId: self });
  peers.setLocalConnections(adj.get(self)!.map((n) => conn(n)));
  const others = names
    .filter((n) => n !== self)
    .map((n) =>
      peer(
        n,
        {},
        adj.get(n)!.map((m) => conn(m)),
      ),
    );
  // Through the wire codec, as gossip would deliver it.
  peers.applyUpdate(decodeTopology(encodeTopology(others)));
  return peers;
}

function routesOf(self: number, edges: [number, number][]): Routes {
  const routes = new Routes(self);
  routes.recompute(meshTable(self, edges).topologyView("established-symmetric"));
  return routes;
}

describe("routes over the peer table", () => {
  const LINE: [number, number][] = [
    [1, 0x10],
    [0x10, 0x100],
    [0x100, 9],
  ];
  const RING: [number, number][] = [
    [1, 0x10],
    [0x10, 0x100],
    [0x100, 9],
    [9, 1],
  ];
  const STAR: [number, number][] = [
    [0x10, 1],
    [0x10, 9],
    [0x10, 0x100],
  ];

  it("line", () => {
    const r = routesOf(0x10, LINE);
    expect(Object.fromEntries(r.unicastTable())).toEqual({ 1: 1, 0x100: 0x100, 9: 0x100 });
    expect(r.broadcastNextHops(0x10)).toEqual([1, 0x100]);
    expect(r.broadcastNextHops(1)).toEqual([0x100]);
    expect(r.broadcastNextHops(9)).toEqual([1]);
    expect(routesOf(9, LINE).broadcastNextHops(1)).toEqual([]);
  });

  it("ring of four: ties broken by numeric name order", () => {
    const r = routesOf(1, RING);
    // 0x100 is two hops either way; 9 < 0x10 so the path via 9 is found first.
    expect(Object.fromEntries(r.unicastTable())).toEqual({ 9: 9, 0x10: 0x10, 0x100: 9 });
    expect(breadthFirstRoutes(meshTable(1, RING).topologyView("all"), 1).route.get(0x100)).toBe(9);
    // Every flood reaches each peer exactly once.
    const all = new Map([1, 9, 0x10, 0x100].map((n) => [n, routesOf(n, RING)]));
    for (const source of all.keys()) {
      const received = new Map<number, number>();
      const queue = [...all.get(source)!.broadcastNextHops(source)];
      while (queue.length > 0) {
        const p = queue.shift()!;
        received.set(p, (received.get(p) ?? 0) + 1);
        queue.push(...all.get(p)!.broadcastNextHops(source));
      }
      expect([...received.values()]).toEqual([1, 1, 1]);
      expect(received.has(source)).toBe(false);
    }
  });

  it("star: the hub forwards to every leaf but the source", () => {
    const hub = routesOf(0x10, STAR);
    expect(hub.broadcastNextHops(1)).toEqual([9, 0x100]);
    expect(hub.broadcastNextHops(0x10)).toEqual([1, 9, 0x100]);
    const leaf = routesOf(9, STAR);
    expect(Object.fromEntries(leaf.unicastTable())).toEqual({ 0x10: 0x10, 1: 0x10, 0x100: 0x10 });
    expect(leaf.broadcastNextHops(1)).toEqual([]);
  });

  it("a link one side has not established carries no data routes", () => {
    const peers = meshTable(0x10, LINE);
    peers.applyUpdate([peer(0x100, { version: 2n }, [conn(0x10, false), conn(9)])]);
    const r = new Routes(0x10);
    r.recompute(peers.topologyView("established-symmetric"));
    expect(Object.fromEntries(r.unicastTable())).toEqual({ 1: 1 });
    r.recompute(peers.topologyView("all"));
    expect(Object.fromEntries(r.unicastTable())).toEqual({ 1: 1, 0x100: 0x100, 9: 0x100 });
  });
});

describe("gossip encoding", () => {
  it("encodeFull has every peer, ourselves first; encodeSubset the known named ones", () => {
    const peers = table();
    peers.setLocalConnections([conn(1)]);
    peers.applyUpdate([peer(2, {}, [conn(3)]), peer(1)]);
    expect(peers.encodeFull().map((p) => p.name)).toEqual([SELF, 1, 2, 3]);
    expect(peers.encodeSubset([2, SELF, 77, 2])).toEqual([peers.get(2), peers.ourSummary]);
  });

  it("a second table learns the same topology from the first's full state", () => {
    const a = table();
    a.setLocalConnections([conn(1, true, true)]);
    a.applyUpdate([peer(1, {}, [conn(SELF), conn(2)]), peer(2, {}, [conn(1)])]);
    const b = new Peers({ name: 2, nickname: "b", uid: 8n, shortId: 2 });
    b.setLocalConnections([conn(1)]);
    const r = b.applyUpdate(decodeTopology(encodeTopology(a.encodeFull())));
    expect(b.get(SELF)).toEqual(a.ourSummary);
    expect(b.get(1)).toEqual(a.get(1));
    // a holds a record of name 2 with another UID (at a lower version than b's): b keeps its
    // own entry and re-advertises it.
    expect(r.improved).toEqual([SELF, 1, 2]);
    expect(b.ourSummary).toMatchObject({ uid: 8n, nickname: "b", version: 2n });
  });

  it("list() copies: callers cannot alter the table", () => {
    const peers = table();
    peers.setLocalConnections([conn(1)]);
    const listed = peers.list();
    listed[0]!.connections.push(conn(9));
    listed[0]!.version = 99n;
    expect(peers.ourSummary.connections).toHaveLength(1);
    expect(peers.version).toBe(2n);
  });
});

describe("caps", () => {
  it("skips summaries that would take the table past maxPeers, and counts them", () => {
    const peers = table({ maxPeers: 4 });
    const r = peers.applyUpdate([
      peer(1, {}, [conn(2)]), // adds 1 and placeholder 2 → 3 peers
      peer(3, {}, [conn(4)]), // would add 3 and 4 → 5: skipped
      peer(5), // adds 5 → 4 peers
      peer(6), // skipped
      peer(1, { version: 2n }), // known peer: still merged
    ]);
    expect(r.improved).toEqual([1, 5]);
    expect(r.skipped).toBe(2);
    expect(peers.size).toBe(4);
    expect(peers.get(1)!.version).toBe(2n);
    expect(peers.stats.rejectedSummaries).toBe(2);
  });

  it("skips summaries with too many connections or out-of-range fields", () => {
    const peers = table({ maxConnectionsPerPeer: 2 });
    const r = peers.applyUpdate([
      peer(1, {}, [conn(2), conn(3), conn(4)]),
      peer(5, { shortId: 4096 }),
      peer(6, { uid: -1n }),
      peer(2 ** 48),
      peer(7, {}, [conn(2), conn(3)]),
    ]);
    expect(r).toEqual({ improved: [7], added: [7, 2, 3], skipped: 4 });
  });
});

describe("properties", () => {
  const names = [1, 2, 3, SELF, 0x20, 0x30, 0x40, 0x50];
  const arbConn = fc.record({
    name: fc.constantFrom(...names, 0x99, 0x98),
    remoteTcpAddr: fc.constant("10.1.1.1:6783"),
    outbound: fc.boolean(),
    established: fc.boolean(),
  });
  const arbSummary: fc.Arbitrary<PeerSummary> = fc.record({
    name: fc.constantFrom(...names),
    nickname: fc.constantFrom("a", "b", "self"),
    uid: fc.oneof(fc.constant(1000n), fc.bigInt({ min: 0n, max: 2000n })),
    version: fc.bigInt({ min: 0n, max: 50n }),
    shortId: fc.constantFrom(1, 2, 100, 4095),
    hasShortId: fc.boolean(),
    connections: fc.array(arbConn, { maxLength: 6 }),
  });
  const arbStep = fc.oneof(
    { weight: 5, arbitrary: fc.array(arbSummary, { maxLength: 6 }).map((u) => ({ update: u })) },
    { weight: 1, arbitrary: fc.array(arbConn, { maxLength: 3 }).map((c) => ({ local: c })) },
    { weight: 1, arbitrary: fc.constant({ gc: true as const }) },
  );

  it("random update sequences respect the caps and only ever bump our own entry", () => {
    fc.assert(
      fc.property(fc.array(arbStep, { maxLength: 30 }), (steps) => {
        const peers = table({ maxPeers: 6, maxConnectionsPerPeer: 4, randomInt: (n) => n - 1 });
        let ours = peers.ourSummary;
        for (const step of steps) {
          if ("update" in step) {
            const sizeBefore = peers.size;
            const { improved } = peers.applyUpdate(step.update);
            const now = peers.ourSummary;
            // Identity and connections never change from outside; version only goes up, and
            // only a short-id change or a bump above a foreign summary touches our entry.
            expect(now).toMatchObject({
              name: ours.name,
              nickname: ours.nickname,
              uid: ours.uid,
              hasShortId: true,
              connections: ours.connections,
            });
            expect(now.version >= ours.version).toBe(true);
            if (now.shortId !== ours.shortId) expect(now.version > ours.version).toBe(true);
            if (now.version !== ours.version) expect(improved).toContain(SELF);
            // Caps: gossip never takes the table past maxPeers (local connections may have
            // added entries beyond it, but then gossip adds none), nor a list past its cap.
            expect(peers.size).toBeLessThanOrEqual(Math.max(6, sizeBefore));
            for (const p of peers.list()) {
              if (p.name !== SELF) expect(p.connections.length).toBeLessThanOrEqual(4);
            }
            ours = now;
          } else if ("local" in step) {
            const changed = peers.setLocalConnections(step.local);
            if (changed) expect(peers.version).toBe(ours.version + 1n);
            ours = peers.ourSummary;
          } else {
            peers.garbageCollect();
            expect(peers.has(SELF)).toBe(true);
            for (const c of ours.connections) expect(peers.has(c.name)).toBe(true);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
