// Whole-mesh behaviour in the in-process simulator (test/sim/mesh-sim.ts): real `Mesh`
// instances on a simulated transport, in virtual time (the simulator's own clock drives the
// mesh's timers). Assertions are about completion, never about how long anything took.
import { afterEach, describe, expect, it } from "vitest";
import { TOPOLOGY_CHANNEL } from "../../../src/mesh/topology-gossiper.js";
import {
  TAG_GOSSIP,
  TAG_GOSSIP_BROADCAST,
  TAG_GOSSIP_UNICAST,
  encodeBroadcast,
  encodeGossip,
} from "../../../src/wire/gossip-envelope.js";
import type { PeerName } from "../../../src/wire/peer-name.js";
import {
  DEFAULT_MAX_CONNECTIONS_PER_PEER,
  DEFAULT_MAX_PEERS,
  type PeerSummary,
  encodeTopology,
} from "../../../src/wire/topology.js";
import { MeshSim, type SimPeer, lineEdges, ringEdges, seededRandom } from "../../sim/mesh-sim.js";

// Virtual time allowed to converge: several 30 s periodic gossip rounds, so that convergence
// that needs one (a peer missed by the random-neighbour relays) still counts.
const VIRTUAL_TIMEOUT_MS = 300_000;
const WALL_TIMEOUT_MS = 120_000;

let sim: MeshSim | undefined;

afterEach(() => {
  sim?.dispose();
  sim = undefined;
});

function converge(s: MeshSim): number {
  const took = s.runUntilConverged(VIRTUAL_TIMEOUT_MS);
  expect(took, `not converged:\n${s.whyNotConverged().join("\n")}`).toBeDefined();
  return took!;
}

/** The checks every converged mesh must pass, beyond `isConverged`. */
function expectHealthy(s: MeshSim, routes: ("data" | "gossip")[] = ["data"]): void {
  const live = s.livePeers();
  for (const p of live) {
    expect(p.mesh.peers.size).toBe(live.length);
    expect(s.routesOf(p).unicastTable().size).toBe(live.length - 1);
    expect(p.counters.gossip_rx_malformed).toBe(0);
    expect(p.counters.gossip_handler_errors).toBe(0);
    expect(p.counters.topology_rejected).toBe(0);
  }
  for (const which of routes) {
    expect(s.unicastProblems(which)).toEqual([]);
    expect(s.floodProblems(which)).toEqual([]);
  }
}

describe("mesh simulation: convergence", () => {
  it(
    "50 peers on a random connected graph (average degree 4) converge",
    () => {
      sim = new MeshSim({ seed: 50 });
      const peers = sim.addPeers(50);
      expect(sim.buildTopology(peers, "random", 4)).toHaveLength(100);
      converge(sim);
      expectHealthy(sim, ["data", "gossip"]);
    },
    WALL_TIMEOUT_MS,
  );

  it(
    "200 peers on a random connected graph (average degree 4) converge",
    () => {
      sim = new MeshSim({ seed: 200 });
      const peers = sim.addPeers(200);
      expect(sim.buildTopology(peers, "random", 4)).toHaveLength(400);
      converge(sim);
      expectHealthy(sim);
    },
    WALL_TIMEOUT_MS,
  );

  it("a ring and a line converge", () => {
    for (const [n, edges] of [
      [16, ringEdges(16)],
      [12, lineEdges(12)],
    ] as const) {
      const s = new MeshSim({ seed: n });
      try {
        s.connectEdges(s.addPeers(n), edges);
        converge(s);
        expectHealthy(s, ["data", "gossip"]);
      } finally {
        s.dispose();
      }
    }
  });
});

describe("mesh simulation: a peer dies", () => {
  it(
    "the mesh re-converges around it and every peer forgets it",
    () => {
      sim = new MeshSim({ seed: 7 });
      const peers = sim.addPeers(50);
      // No cut vertex: the mesh stays connected whichever peer dies.
      sim.buildTopology(peers, "random-2-connected", 4);
      converge(sim);

      // The busiest peer: some routes between other peers go through it.
      const victim = peers.reduce((a, b) => (b.links.size > a.links.size ? b : a));
      const through = (p: SimPeer): number =>
        [...sim!.routesOf(p).unicastTable()].filter(
          ([dst, hop]) => hop === victim.name && dst !== victim.name,
        ).length;
      expect(peers.filter((p) => p !== victim).some((p) => through(p) > 0)).toBe(true);

      sim.kill(victim);
      converge(sim);

      const live = sim.livePeers();
      expect(live).toHaveLength(49);
      for (const p of live) {
        expect(p.mesh.peers.has(victim.name)).toBe(false);
        expect(p.removed).toContain(victim.name);
        const table = sim.routesOf(p).unicastTable();
        expect(table.has(victim.name)).toBe(false);
        expect([...table.values()]).not.toContain(victim.name);
        expect(p.mesh.gossipRoutes.unicastTable().has(victim.name)).toBe(false);
      }
      expectHealthy(sim, ["data", "gossip"]);
    },
    WALL_TIMEOUT_MS,
  );
});

// --- hostile input

const fakeName = (i: number): PeerName => 0x0e0000000000 + i;

function fakeSummary(name: PeerName, connections: PeerName[]): PeerSummary {
  return {
    name,
    nickname: "",
    uid: BigInt(name),
    version: 1n,
    shortId: name % 4096,
    hasShortId: true,
    connections: connections.map((c) => ({
      name: c,
      remoteTcpAddr: "192.0.2.1:6783",
      outbound: true,
      established: true,
    })),
  };
}

function topologyGossip(src: PeerName, summaries: PeerSummary[]): Uint8Array {
  return encodeGossip({ channel: TOPOLOGY_CHANNEL, src, payload: encodeTopology(summaries) });
}

describe("mesh simulation: a hostile peer", () => {
  it(
    "cannot grow the other peers' tables past the caps, and is forgotten once gone",
    () => {
      sim = new MeshSim({ seed: 11 });
      const peers = sim.addPeers(12);
      sim.buildTopology(peers, "random-2-connected", 4);
      converge(sim);

      const hostile = sim.addExternal();
      const victims = peers.slice(0, 3);
      for (const v of victims) sim.connect(hostile, v);
      sim.run(100);

      const random = seededRandom(99);
      const garbage = (): Uint8Array =>
        Uint8Array.from({ length: Math.floor(random() * 600) }, () => Math.floor(random() * 256));
      for (const v of victims) {
        // Bytes that are no envelope at all, under every gossip tag and a foreign one.
        for (let i = 0; i < 20; i++) {
          for (const tag of [TAG_GOSSIP, TAG_GOSSIP_UNICAST, TAG_GOSSIP_BROADCAST, 99]) {
            hostile.send(v.name, tag, garbage());
          }
        }
        // Good envelopes around payloads that are no topology.
        for (let i = 0; i < 20; i++) {
          const payload = garbage();
          hostile.send(
            v.name,
            TAG_GOSSIP,
            encodeGossip({ channel: TOPOLOGY_CHANNEL, src: hostile.name, payload }),
          );
          hostile.send(
            v.name,
            TAG_GOSSIP_BROADCAST,
            encodeBroadcast({ channel: TOPOLOGY_CHANNEL, src: hostile.name, payload }),
          );
        }
      }
      // More summaries in one payload than a table may hold: refused whole.
      const tooMany = Array.from({ length: DEFAULT_MAX_PEERS + 1 }, (_, i) =>
        fakeSummary(fakeName(i), []),
      );
      hostile.send(victims[0]!.name, TAG_GOSSIP, topologyGossip(hostile.name, tooMany));
      // One peer with more connections than allowed: refused.
      const wide = fakeSummary(
        fakeName(0),
        Array.from({ length: DEFAULT_MAX_CONNECTIONS_PER_PEER + 1 }, (_, i) => fakeName(i + 1)),
      );
      hostile.send(victims[1]!.name, TAG_GOSSIP, topologyGossip(hostile.name, [wide]));
      sim.run(3_000);
      // Nothing taken in but the hostile peer itself (named in its victims' connection lists).
      for (const p of peers) expect(p.mesh.peers.size).toBe(peers.length + 1);

      // Then valid gossip naming ~6000 peers that all hang off the hostile one (so no garbage
      // collection saves the tables): hostile → 1000 fakes, each → 5 more.
      const first = Array.from({ length: 1000 }, (_, i) => fakeName(i));
      const flood: PeerSummary[] = [
        { ...fakeSummary(hostile.name, first), uid: hostile.uid, version: 10n },
        ...first.map((name, i) =>
          fakeSummary(
            name,
            Array.from({ length: 5 }, (_, k) => fakeName(1000 + i * 5 + k)),
          ),
        ),
      ];
      hostile.send(victims[2]!.name, TAG_GOSSIP, topologyGossip(hostile.name, flood));
      sim.run(5_000);

      let rejected = 0;
      for (const p of peers) {
        const table = p.mesh.peers;
        // Filled up to the cap (less than one summary's worth short of it), and no further.
        expect(table.size).toBeLessThanOrEqual(table.maxPeers);
        expect(table.size).toBeGreaterThan(table.maxPeers - 7);
        for (const q of peers) expect(table.has(q.name)).toBe(true);
        for (const entry of table.list()) {
          expect(entry.connections.length).toBeLessThanOrEqual(table.maxConnectionsPerPeer);
        }
        rejected += p.counters.topology_rejected;
      }
      expect(rejected).toBeGreaterThan(0);
      for (const v of victims) {
        expect(v.counters.gossip_rx_malformed).toBeGreaterThan(0);
        expect(v.counters.gossip_handler_errors).toBe(0);
      }

      // Once it is gone, everything it made up is garbage-collected everywhere.
      sim.kill(hostile);
      converge(sim);
      for (const p of peers) {
        expect(p.mesh.peers.size).toBe(peers.length);
        expect(p.removed).toContain(hostile.name);
      }
      expect(sim.unicastProblems()).toEqual([]);
      expect(sim.floodProblems()).toEqual([]);
    },
    WALL_TIMEOUT_MS,
  );
});
