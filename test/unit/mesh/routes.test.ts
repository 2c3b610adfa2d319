import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Routes, breadthFirstRoutes, type TopologyView } from "../../../src/mesh/routes.js";

type Edges = [number, number][];

function topology(edges: Edges): TopologyView & { peers: number[] } {
  const adj = new Map<number, number[]>();
  for (const [a, b] of edges) {
    if (!adj.has(a)) adj.set(a, []);
    if (!adj.has(b)) adj.set(b, []);
    adj.get(a)!.push(b);
    adj.get(b)!.push(a);
  }
  return { neighbours: (p) => adj.get(p) ?? [], peers: [...adj.keys()].sort((a, b) => a - b) };
}

function routesFor(edges: Edges): Map<number, Routes> {
  const topo = topology(edges);
  const all = new Map<number, Routes>();
  for (const peer of topo.peers) {
    const r = new Routes(peer);
    r.recompute(topo);
    all.set(peer, r);
  }
  return all;
}

/** Floods from `source` hop by hop; returns how many times each peer received the frame. */
function simulateFlood(all: Map<number, Routes>, source: number): Map<number, number> {
  const received = new Map<number, number>();
  const queue: number[] = [...all.get(source)!.broadcastNextHops(source)];
  let steps = 0;
  while (queue.length > 0) {
    if (++steps > 10_000) throw new Error("flood loops");
    const peer = queue.shift()!;
    received.set(peer, (received.get(peer) ?? 0) + 1);
    queue.push(...all.get(peer)!.broadcastNextHops(source));
  }
  return received;
}

function expectExactlyOnce(edges: Edges): void {
  const all = routesFor(edges);
  for (const source of all.keys()) {
    const received = simulateFlood(all, source);
    const expected = new Map([...all.keys()].filter((p) => p !== source).map((p) => [p, 1]));
    expect(received, `flood from ${source}`).toEqual(expected);
  }
}

const unicastTable = (r: Routes): Record<number, number> => Object.fromEntries(r.unicastTable());

// Names chosen so that numeric order differs from string order (9 < 0x10 < 0x100).
const LINE: Edges = [
  [1, 2],
  [2, 3],
  [3, 4],
];
const RING: Edges = [
  [1, 2],
  [2, 3],
  [3, 4],
  [4, 1],
];
const STAR: Edges = [
  [1, 2],
  [1, 3],
  [1, 4],
  [1, 5],
];
/** Ring 1-2-3-4 and ring 5-6-7-8 joined by the one link 3-6. */
const TWO_RINGS: Edges = [
  [1, 2],
  [2, 3],
  [3, 4],
  [4, 1],
  [5, 6],
  [6, 7],
  [7, 8],
  [8, 5],
  [3, 6],
];

describe("breadthFirstRoutes (spec 6.3)", () => {
  it("visits each level in numeric name order", () => {
    // 1 reaches 0x10 and 9; both reach 0x100. 9 < 0x10 numerically (not as strings): 9 wins.
    const topo = topology([
      [1, 0x10],
      [1, 9],
      [0x10, 0x100],
      [9, 0x100],
    ]);
    expect(breadthFirstRoutes(topo, 1).route.get(0x100)).toBe(9);
    // the neighbour order does not matter
    const topo2 = topology([
      [1, 9],
      [1, 0x10],
      [9, 0x100],
      [0x10, 0x100],
    ]);
    expect(breadthFirstRoutes(topo2, 1).route.get(0x100)).toBe(9);
  });

  it("stops at the given peer, keeping the partial route map", () => {
    const topo = topology(LINE);
    const r = breadthFirstRoutes(topo, 1, 3);
    expect(r.found).toBe(true);
    expect([...r.route.keys()].sort()).toEqual([1, 2, 3]);
    expect(breadthFirstRoutes(topo, 1, 99).found).toBe(false);
    expect(breadthFirstRoutes(topo, 1, 1)).toEqual({ found: true, route: new Map([[1, null]]) });
  });
});

describe("Routes, fixed topologies", () => {
  it("line of 4", () => {
    const all = routesFor(LINE);
    expect(unicastTable(all.get(1)!)).toEqual({ 2: 2, 3: 2, 4: 2 });
    expect(unicastTable(all.get(2)!)).toEqual({ 1: 1, 3: 3, 4: 3 });
    expect(all.get(2)!.broadcastNextHops(1)).toEqual([3]);
    expect(all.get(3)!.broadcastNextHops(1)).toEqual([4]);
    expect(all.get(4)!.broadcastNextHops(1)).toEqual([]);
    expect(all.get(1)!.broadcastNextHops(1)).toEqual([2]);
    expect(all.get(2)!.broadcastNextHops(3)).toEqual([1]);
    expect(all.get(3)!.broadcastNextHops(2)).toEqual([4]);
    expectExactlyOnce(LINE);
  });

  it("ring of 4", () => {
    const all = routesFor(RING);
    expect(unicastTable(all.get(1)!)).toEqual({ 2: 2, 3: 2, 4: 4 });
    expect(unicastTable(all.get(3)!)).toEqual({ 1: 2, 2: 2, 4: 4 });
    expect(unicastTable(all.get(2)!)).toEqual({ 1: 1, 3: 3, 4: 1 });
    expect([...all.get(1)!.broadcastNextHops(1)].sort()).toEqual([2, 4]);
    expect(all.get(2)!.broadcastNextHops(1)).toEqual([3]);
    expect(all.get(4)!.broadcastNextHops(1)).toEqual([]);
    expect(all.get(3)!.broadcastNextHops(1)).toEqual([]);
    expect(all.get(1)!.broadcastNextHops(2)).toEqual([4]);
    expect(all.get(3)!.broadcastNextHops(2)).toEqual([]);
    expectExactlyOnce(RING);
  });

  it("star", () => {
    const all = routesFor(STAR);
    expect(unicastTable(all.get(2)!)).toEqual({ 1: 1, 3: 1, 4: 1, 5: 1 });
    expect(unicastTable(all.get(1)!)).toEqual({ 2: 2, 3: 3, 4: 4, 5: 5 });
    expect([...all.get(1)!.broadcastNextHops(2)].sort()).toEqual([3, 4, 5]);
    expect(all.get(3)!.broadcastNextHops(2)).toEqual([]);
    expect(all.get(2)!.broadcastNextHops(2)).toEqual([1]);
    expectExactlyOnce(STAR);
  });

  it("two rings joined by one link", () => {
    const all = routesFor(TWO_RINGS);
    expect(unicastTable(all.get(1)!)).toEqual({ 2: 2, 3: 2, 4: 4, 5: 2, 6: 2, 7: 2, 8: 2 });
    expect(unicastTable(all.get(7)!)).toEqual({ 1: 6, 2: 6, 3: 6, 4: 6, 5: 6, 6: 6, 8: 8 });
    expect(all.get(3)!.broadcastNextHops(1)).toEqual([6]);
    expect(all.get(6)!.broadcastNextHops(1)).toEqual([5, 7]);
    // 5 and 7 both reach 8 at the same level; 5 is visited first and owns it
    expect(all.get(5)!.broadcastNextHops(1)).toEqual([8]);
    expect(all.get(7)!.broadcastNextHops(1)).toEqual([]);
    expect(all.get(8)!.broadcastNextHops(1)).toEqual([]);
    expectExactlyOnce(TWO_RINGS);
  });

  it("unreachable peers have no route and get nothing from us", () => {
    const topo = topology([...LINE, [7, 8]]);
    const r = new Routes(1);
    r.recompute(topo);
    expect(r.unicastNextHop(7)).toBeUndefined();
    expect(r.unicastNextHop(1)).toBeUndefined(); // ourselves
    expect(r.unicastNextHop(4)).toBe(2);
    expect(r.broadcastNextHops(7)).toEqual([]);
    expect(new Routes(1).broadcastNextHops(1)).toEqual([]); // before any recompute
  });

  it("recompute drops cached broadcast hops", () => {
    const r = new Routes(2);
    r.recompute(topology(LINE));
    expect(r.broadcastNextHops(1)).toEqual([3]);
    r.recompute(topology([[1, 2]]));
    expect(r.broadcastNextHops(1)).toEqual([]);
    expect(r.unicastNextHop(3)).toBeUndefined();
  });
});

describe("Routes, random connected topologies", () => {
  it("a flood from every source reaches every peer exactly once", () => {
    const graph = fc
      .tuple(
        fc.integer({ min: 1, max: 12 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 30 }),
        fc.array(fc.integer({ min: 1, max: 2 ** 48 - 1 }), { minLength: 12, maxLength: 12 }),
      )
      .map(([n, extra, names]) => {
        const unique = [...new Set(names)];
        const size = Math.min(n, unique.length);
        const edges = new Set<string>();
        const list: Edges = [];
        const add = (a: number, b: number): void => {
          if (a === b) return;
          const key = a < b ? `${a}-${b}` : `${b}-${a}`;
          if (edges.has(key)) return;
          edges.add(key);
          list.push([unique[a]!, unique[b]!]);
        };
        for (let i = 1; i < size; i++) add(i, extra[i]?.[0] !== undefined ? extra[i]![0] % i : 0);
        for (const [a, b] of extra) add(a % size, b % size);
        return list;
      })
      .filter((edges) => edges.length > 0);
    fc.assert(
      fc.property(graph, (edges) => expectExactlyOnce(edges)),
      { numRuns: 200 },
    );
  });
});

describe("relaysFlood: whether a neighbour passes our flood on", () => {
  it("agrees with the neighbour's own broadcast next hops, for any graph", () => {
    const edgesArb = fc
      .array(fc.tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 })), {
        maxLength: 16,
      })
      .map((edges) => edges.filter(([a, b]) => a !== b));
    fc.assert(
      fc.property(edgesArb, (edges) => {
        const all = routesFor(edges);
        for (const [self, routes] of all) {
          for (const source of all.keys()) {
            for (const hop of routes.broadcastNextHops(source)) {
              const theirs = all.get(hop)!.broadcastNextHops(source).length > 0;
              expect(routes.relaysFlood(hop, source)).toBe(theirs);
            }
          }
          expect(self).toBeGreaterThan(0);
        }
      }),
    );
  });

  it("a leaf relays nothing; the middle of a line relays ours", () => {
    // 1 - 2 - 3, and 1 - 4
    const all = routesFor([
      [1, 2],
      [2, 3],
      [1, 4],
    ]);
    const r = all.get(1)!;
    expect(r.relaysFlood(2, 1)).toBe(true);
    expect(r.relaysFlood(4, 1)).toBe(false);
  });
});
