import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConsensusDriver, initialQuorum } from "../../../src/ipam/consensus.js";
import {
  type ConsensusRule,
  MAX_PAXOS_NODES,
  MAX_UINT64,
  PaxosError,
  PaxosNode,
  PaxosObserver,
  ZERO_PROPOSAL,
  compareProposals,
  quorumFor,
  ringMembers,
  zeroClaims,
} from "../../../src/ipam/paxos.js";
import type {
  AcceptedValue,
  NodeClaims,
  NodeId,
  PaxosState,
  ProposalId,
} from "../../../src/ipam/types.js";
import {
  type GobStruct,
  type GobValue,
  decodeStream,
  expectMap,
  expectStruct,
  fieldSlice,
  fieldUint,
} from "../../../src/wire/gob.js";
import type { PeerName } from "../../../src/wire/peer-name.js";
import { hex } from "../vectors.js";
import { V22a_HEX, V22b_HEX, V22c_HEX, V22d_HEX, V22e_HEX, V22f_HEX } from "./ipam-vectors.js";

// --- inputs of weave-wire-vectors.txt V20–V30 ---

const A: NodeId = { name: 0x7a0000000001, uid: 0x1111111111111111n };
const B: NodeId = { name: 0x7a0000000002, uid: 0x2222222222222222n };
const C: NodeId = { name: 0x7a0000000003, uid: 0x3333333333333333n };

const p = (round: bigint, proposer: NodeId): ProposalId => ({ round, proposer });
const claims = (c: Partial<NodeClaims>): NodeClaims => ({ ...zeroClaims(), ...c });

// --- V22a–f, as transcribed from the vectors file (ipam-vectors.ts) ---

const V22 = {
  a: V22a_HEX,
  b: V22b_HEX,
  c: V22c_HEX,
  d: V22d_HEX,
  e: V22e_HEX,
  f: V22f_HEX,
};
const V22_LENGTHS = { a: 551, b: 605, c: 660, d: 716, e: 772, f: 549 };

// A reader for the Paxos field, written here from 8.3.2 (independent of src/ipam/wire.ts).
function sub(s: GobStruct, field: string): GobStruct {
  const v = s[field];
  return v === undefined ? (Object.create(null) as GobStruct) : expectStruct(v, field);
}
function nodeIdOf(s: GobStruct): NodeId {
  return { name: Number(fieldUint(s, "Name")), uid: fieldUint(s, "UID") };
}
function proposalOf(s: GobStruct): ProposalId {
  return { round: fieldUint(s, "Round"), proposer: nodeIdOf(sub(s, "Proposer")) };
}
function paxosOf(message: Uint8Array): PaxosState | undefined {
  const [value] = decodeStream(message);
  const paxos: GobValue | undefined = expectStruct(value, "gossipState")["Paxos"];
  if (paxos === undefined) return undefined;
  const out: PaxosState = [];
  for (const [key, elem] of expectMap(paxos, "Paxos")) {
    const c = expectStruct(elem, "NodeClaims");
    const val = sub(c, "AcceptedVal");
    out.push({
      node: nodeIdOf(expectStruct(key, "NodeID")),
      claims: {
        promise: proposalOf(sub(c, "Promise")),
        accepted: proposalOf(sub(c, "Accepted")),
        acceptedVal: {
          value: fieldSlice(val, "Value").map((n) => Number(n as bigint)),
          origin: proposalOf(sub(val, "Origin")),
        },
      },
    });
  }
  return sorted(out);
}
function vector(which: keyof typeof V22): PaxosState | undefined {
  const bytes = hex(V22[which]);
  expect(bytes.length).toBe(V22_LENGTHS[which]);
  return paxosOf(bytes);
}
function sorted(state: PaxosState): PaxosState {
  return [...state].sort((x, y) =>
    x.node.name !== y.node.name
      ? x.node.name - y.node.name
      : x.node.uid < y.node.uid
        ? -1
        : x.node.uid > y.node.uid
          ? 1
          : 0,
  );
}

describe("proposal order and quorum (8.6.1, 8.1)", () => {
  it("orders by round, then proposer name, then proposer UID; round 0 is lowest", () => {
    expect(compareProposals(p(1n, B), p(2n, A))).toBe(-1);
    expect(compareProposals(p(2n, A), p(2n, B))).toBe(-1);
    expect(compareProposals(p(2n, { name: 5, uid: 9n }), p(2n, { name: 5, uid: 10n }))).toBe(-1);
    expect(compareProposals(p(3n, C), p(3n, C))).toBe(0);
    expect(compareProposals(ZERO_PROPOSAL, p(1n, { name: 0, uid: 0n }))).toBe(-1);
  });

  it("quorum = floor(N/2)+1 with consensus=N, else from 1 + the given peers", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(quorumFor)).toEqual([1, 2, 2, 3, 3, 4, 4]);
    expect(initialQuorum({ initCount: 5, givenPeers: 0 })).toBe(3);
    expect(initialQuorum({ initCount: 1, givenPeers: 9 })).toBe(1);
    expect(initialQuorum({ givenPeers: 0 })).toBe(1); // started alone: creates a ring alone
    expect(initialQuorum({ givenPeers: 1 })).toBe(2);
    expect(initialQuorum({ givenPeers: 2 })).toBe(2);
    expect(initialQuorum({ givenPeers: 3 })).toBe(3);
    // 8.10: 2 Weave + 2 weft peers all listed → 3, more than the 2 Weave voters
    expect(initialQuorum({ givenPeers: 3 })).toBeGreaterThan(2);
    expect(() => quorumFor(0)).toThrow(RangeError);
    expect(() => quorumFor(2.5)).toThrow(RangeError);
    expect(() => initialQuorum({ givenPeers: -1 })).toThrow(RangeError);
  });

  it("ring members are the value sorted and de-duplicated", () => {
    expect(ringMembers([B.name, A.name, B.name, C.name])).toEqual([A.name, B.name, C.name]);
  });
});

describe("V22a–f as state transitions", () => {
  for (const rule of ["ballot", "origin"] as ConsensusRule[]) {
    it(`A (quorum 2) and B walk prepare, promise, accept request, accepted (${rule} rule)`, () => {
      const a = new PaxosNode(A, { consensusRule: rule });
      const b = new PaxosNode(B, { consensusRule: rule });

      // V22a: an idle elector sends an empty, present map.
      expect(a.state()).toEqual([]);
      expect(vector("a")).toEqual([]);

      // V22b: SetQuorum(2) + Propose.
      a.setQuorum(2);
      expect(a.propose()).toBe(true);
      expect(a.state()).toEqual([{ node: A, claims: claims({ promise: p(1n, A) }) }]);
      expect(a.state()).toEqual(vector("b"));

      // V22c: B.Update changed=true, B.Think changed=true (B had quorum 2 in the generator).
      b.setQuorum(2);
      expect(b.merge(a.state())).toBe(true);
      expect(b.step()).toBe(true);
      expect(b.state()).toEqual(vector("c"));
      expect(b.consensus()).toBeUndefined();

      // V22d: A.Update + Think changed, no consensus yet.
      expect(a.merge(b.state())).toBe(true);
      expect(a.step()).toBe(true);
      expect(a.consensus()).toBeUndefined();
      expect(a.state()).toEqual(vector("d"));
      expect(a.claimsOf(A)?.acceptedVal).toEqual({ value: [A.name, B.name], origin: p(1n, A) });

      // V22e: B accepts and sees consensus {[A B], (1, A)}.
      expect(b.merge(a.state())).toBe(true);
      expect(b.step()).toBe(true);
      expect(b.state()).toEqual(vector("e"));
      const agreed: AcceptedValue = { value: [A.name, B.name], origin: p(1n, A) };
      expect(b.consensus()).toEqual(agreed);

      // A.Update(B) changed=true, A.Consensus=true (and A's own claims do not change).
      expect(a.merge(b.state())).toBe(true);
      expect(a.step()).toBe(false);
      expect(a.consensus()).toEqual(agreed);
      expect(a.knownNodes()).toBe(2);

      // Nothing new the second time.
      expect(a.merge(b.state())).toBe(false);
      expect(b.merge(a.state())).toBe(false);
    });
  }

  it("V22f: an observer sends neither Paxos nor ring, and ignores Paxos state", () => {
    const obs = new PaxosObserver();
    expect(obs.state()).toBeUndefined();
    expect(vector("f")).toBeUndefined();
    expect(obs.merge()).toBe(false);
    expect(obs.receive()).toEqual({ learned: false, changed: false, consensus: undefined });
    expect(obs.propose()).toBe(false);
    expect(obs.consensus()).toBeUndefined();
    expect(obs.knownNodes()).toBe(0);
  });
});

describe("V30 transcript, consensus part (#0–#4)", () => {
  it("A awaits with quorum 2, B is idle (quorum 0): the same four Paxos broadcasts, then A's ring", () => {
    type Sent = { from: "A" | "B"; paxos: PaxosState | undefined; ring: PeerName[] | undefined };
    const sent: Sent[] = [];
    const rings: Record<"A" | "B", PeerName[] | undefined> = { A: undefined, B: undefined };
    const timers: (() => void)[] = [];
    const scheduler = {
      setInterval: (fn: () => void) => timers.push(fn),
      clearInterval: () => undefined,
    };
    const make = (who: "A" | "B", id: NodeId): ConsensusDriver => {
      const driver: ConsensusDriver = new ConsensusDriver({
        participant: new PaxosNode(id),
        initCount: 2,
        givenPeers: () => 1,
        scheduler,
        broadcast: () =>
          sent.push({
            from: who,
            ring: rings[who],
            paxos: rings[who] ? undefined : driver.paxosState(),
          }),
        createRing: (members) => {
          rings[who] = members;
        },
      });
      return driver;
    };
    const a = make("A", A);
    const b = make("B", B);
    expect(a.status()).toBe("idle");
    expect(b.status()).toBe("idle");

    a.start(); // A allocates "c1"
    expect(a.status()).toBe("awaiting consensus (quorum: 2, known: 1)");
    // Each broadcast is delivered to the other side as it happens (tag 6).
    for (let i = 0; i < sent.length && i < 10; i++) {
      const m = sent[i]!;
      if (m.ring) {
        b.ringEstablished(); // B merges the ring (8.2.2 step 2)
        continue;
      }
      (m.from === "A" ? b : a).receivePaxos(m.paxos!);
    }
    expect(sent.map((m) => m.from)).toEqual(["A", "B", "A", "B", "A"]);
    expect(sent[0]!.paxos).toEqual(vector("b")); // #0 = V22b
    expect(sent[1]!.paxos).toEqual(vector("c")); // #1 promise
    expect(sent[2]!.paxos).toEqual(vector("d")); // #2 accept request
    expect(sent[3]!.paxos).toEqual(vector("e")); // #3 accepted
    expect(sent[4]!.ring).toEqual([A.name, B.name]); // #4 ring with seeds [A, B]
    expect(sent[4]!.paxos).toBeUndefined();
    expect(rings.B).toBeUndefined(); // B never decides: quorum 0, learns the ring from #4
    expect(b.quorum).toBe(0);
    expect(a.status()).toBe("ready");
    expect(b.status()).toBe("ready");
    // Later ticks do nothing.
    for (const t of timers) t();
    expect(sent).toHaveLength(5);
  });
});

describe("rules of 8.6.2 in detail", () => {
  it("merge takes higher promises and higher accepteds (with their value) independently", () => {
    const n = new PaxosNode(C);
    expect(n.merge([{ node: A, claims: claims({ promise: p(3n, A) }) }])).toBe(true);
    const val = { value: [A.name], origin: p(2n, B) };
    expect(
      n.merge([
        {
          node: A,
          claims: claims({ promise: p(2n, B), accepted: p(2n, B), acceptedVal: val }),
        },
      ]),
    ).toBe(true);
    expect(n.claimsOf(A)).toEqual(
      claims({ promise: p(3n, A), accepted: p(2n, B), acceptedVal: val }),
    );
    // Equal or lower: nothing learned.
    expect(n.merge([{ node: A, claims: claims({ promise: p(1n, A) }) }])).toBe(false);
    // An unknown node is copied even with zero claims.
    expect(n.merge([{ node: B, claims: zeroClaims() }])).toBe(true);
    expect(n.knownNodes()).toBe(2);
  });

  it("a repeated node in one map: the last entry wins, as in a decoded Go map", () => {
    const n = new PaxosNode(C);
    n.merge([
      { node: A, claims: claims({ promise: p(5n, A) }) },
      { node: A, claims: claims({ promise: p(2n, A) }) },
    ]);
    expect(n.claimsOf(A)?.promise).toEqual(p(2n, A));
  });

  it("propose: 1 + the highest round in any promise or accepted; quorum 1 decides at once", () => {
    const n = new PaxosNode(C, { quorum: 2 });
    n.merge([
      {
        node: A,
        claims: claims({
          promise: p(4n, A),
          accepted: p(7n, B),
          acceptedVal: { value: [A.name], origin: p(7n, B) },
        }),
      },
    ]);
    n.propose();
    expect(n.ownClaims().promise).toEqual(p(8n, C));

    const solo = new PaxosNode(A, { quorum: 1 });
    solo.propose();
    expect(solo.consensus()).toEqual({ value: [A.name], origin: p(1n, A) });
  });

  it("the accept request adopts the highest accepted value among the promisers, keeping its origin", () => {
    const c = new PaxosNode(C, { quorum: 2 });
    const old: AcceptedValue = { value: [A.name, B.name], origin: p(1n, A) };
    c.merge([
      { node: A, claims: claims({ promise: p(1n, A), accepted: p(1n, A), acceptedVal: old }) },
    ]);
    c.propose(); // (2, C)
    expect(c.step()).toBe(false); // only we promised (2, C)
    c.merge([
      { node: A, claims: claims({ promise: p(2n, C), accepted: p(1n, A), acceptedVal: old }) },
    ]);
    expect(c.step()).toBe(true);
    expect(c.ownClaims()).toEqual(
      claims({ promise: p(2n, C), accepted: p(2n, C), acceptedVal: old }),
    );
  });

  it("the value of a fresh proposal is every known node's name, repeats included", () => {
    const restarted = { name: A.name, uid: 7n }; // A again, new incarnation
    const c = new PaxosNode(C, { quorum: 3 });
    c.merge([
      { node: A, claims: claims({ promise: p(1n, A) }) },
      { node: restarted, claims: zeroClaims() },
    ]);
    c.propose();
    c.merge([
      { node: A, claims: claims({ promise: p(2n, C) }) },
      { node: restarted, claims: claims({ promise: p(2n, C) }) },
    ]);
    expect(c.step()).toBe(true);
    expect(c.ownClaims().acceptedVal).toEqual({
      value: [A.name, A.name, C.name],
      origin: p(2n, C),
    });
    expect(ringMembers(c.ownClaims().acceptedVal.value)).toEqual([A.name, C.name]);
  });

  it("a quorum-0 elector promises and accepts but never decides", () => {
    const a = new PaxosNode(A, { quorum: 1 });
    const b = new PaxosNode(B);
    a.propose();
    expect(b.receive(a.state())).toEqual({ learned: true, changed: true, consensus: undefined });
    expect(b.ownClaims().accepted).toEqual(p(1n, A));
    expect(b.consensus()).toBeUndefined();
    expect(a.receive(b.state()).consensus).toEqual({ value: [A.name], origin: p(1n, A) });
  });

  it("a change only in the accepted value, not in its origin, is not stored", () => {
    const b = new PaxosNode(B);
    const v1 = { value: [A.name], origin: p(1n, A) };
    b.merge([
      { node: A, claims: claims({ promise: p(1n, A), accepted: p(1n, A), acceptedVal: v1 }) },
    ]);
    expect(b.step()).toBe(true);
    expect(b.ownClaims().acceptedVal).toEqual(v1);
    expect(b.step()).toBe(false);
  });
});

describe("hostile maps", () => {
  const many = (count: number, from = 1): PaxosState =>
    Array.from({ length: count }, (_, i) => ({
      node: { name: from + i, uid: 1n },
      claims: zeroClaims(),
    }));

  it(`refuses more than ${MAX_PAXOS_NODES} nodes, in one map or in total, changing nothing`, () => {
    const n = new PaxosNode(A);
    expect(() => n.merge(many(MAX_PAXOS_NODES + 1))).toThrow(PaxosError);
    expect(() => n.merge(many(MAX_PAXOS_NODES + 1))).toThrow(/more than the limit of 4096/);
    expect(n.knownNodes()).toBe(0);
    expect(n.merge(many(MAX_PAXOS_NODES - 1))).toBe(true);
    n.propose(); // our own entry makes 4096
    expect(() => n.merge(many(1, 100_000))).toThrow(/would make us know 4097 nodes/);
    expect(n.knownNodes()).toBe(MAX_PAXOS_NODES);
  });

  it("refuses values out of range with a PaxosError", () => {
    const n = new PaxosNode(A);
    const bad: PaxosState[] = [
      [{ node: { name: -1, uid: 1n }, claims: zeroClaims() }],
      [{ node: { name: 2 ** 48, uid: 1n }, claims: zeroClaims() }],
      [{ node: { name: 1.5, uid: 1n }, claims: zeroClaims() }],
      [{ node: { name: 1, uid: 2n ** 64n }, claims: zeroClaims() }],
      [{ node: B, claims: claims({ promise: p(-1n, B) }) }],
      [{ node: B, claims: claims({ accepted: p(2n ** 64n, B) }) }],
      [
        {
          node: B,
          claims: claims({
            acceptedVal: {
              value: Array<number>(MAX_PAXOS_NODES + 1).fill(1),
              origin: ZERO_PROPOSAL,
            },
          }),
        },
      ],
      [{ node: B, claims: claims({ acceptedVal: { value: [2 ** 53], origin: ZERO_PROPOSAL } }) }],
      [{ node: B, claims: undefined as unknown as NodeClaims }],
      null as unknown as PaxosState,
    ];
    for (const state of bad) expect(() => n.merge(state)).toThrow(PaxosError);
    expect(n.knownNodes()).toBe(0);
  });

  it("ignores claims about our own node", () => {
    const n = new PaxosNode(A, { quorum: 2 });
    n.propose();
    const ours = n.ownClaims();
    const forged = claims({
      promise: p(MAX_UINT64, B),
      accepted: p(MAX_UINT64, B),
      acceptedVal: { value: [B.name], origin: p(MAX_UINT64, B) },
    });
    expect(n.merge([{ node: A, claims: forged }])).toBe(false);
    expect(n.ownClaims()).toEqual(ours);
  });

  it("rounds near 2^64: proposes up to the largest uint64, then refuses instead of wrapping", () => {
    const n = new PaxosNode(A, { quorum: 2 });
    n.merge([{ node: B, claims: claims({ promise: p(MAX_UINT64 - 1n, B) }) }]);
    expect(n.propose()).toBe(true);
    expect(n.ownClaims().promise).toEqual(p(MAX_UINT64, A));
    expect(n.propose()).toBe(false);
    expect(n.ownClaims().promise).toEqual(p(MAX_UINT64, A));
    expect(n.step()).toBe(false);
  });

  it("fuzz: arbitrary maps only ever fail with PaxosError; our own claims never go down", () => {
    const nodeIds = fc.record({
      name: fc.oneof(
        fc.constantFrom(A.name, B.name, C.name),
        fc.integer({ min: 0, max: 2 ** 48 - 1 }),
      ),
      uid: fc.oneof(fc.constantFrom(A.uid, B.uid, C.uid), fc.bigInt({ min: 0n, max: MAX_UINT64 })),
    });
    const rounds = fc.oneof(
      fc.bigInt({ min: 0n, max: 4n }),
      fc.bigInt({ min: MAX_UINT64 - 2n, max: MAX_UINT64 + 1n }),
      fc.bigInt({ min: -1n, max: MAX_UINT64 }),
    );
    const proposals = fc.record({ round: rounds, proposer: nodeIds });
    const states = fc.array(
      fc.record({
        node: nodeIds,
        claims: fc.record({
          promise: proposals,
          accepted: proposals,
          acceptedVal: fc.record({
            value: fc.array(fc.integer({ min: -1, max: 2 ** 48 }), { maxLength: 5 }),
            origin: proposals,
          }),
        }),
      }),
      { maxLength: 6 },
    );
    fc.assert(
      fc.property(fc.array(states, { maxLength: 6 }), fc.integer({ min: 0, max: 3 }), (maps, q) => {
        const n = new PaxosNode(A, { quorum: q });
        for (const m of maps) {
          const before = n.ownClaims();
          try {
            n.receive(m);
          } catch (e) {
            expect(e).toBeInstanceOf(PaxosError);
          }
          n.propose();
          n.consensus();
          const after = n.ownClaims();
          expect(compareProposals(after.promise, before.promise)).toBeGreaterThanOrEqual(0);
          expect(compareProposals(after.accepted, before.accepted)).toBeGreaterThanOrEqual(0);
          expect(compareProposals(after.accepted, after.promise)).toBeLessThanOrEqual(0);
        }
      }),
      { numRuns: 300 },
    );
  });
});

// --- simulated clusters ---

interface Message {
  to: number;
  state: PaxosState;
}

class Cluster {
  readonly nodes: PaxosNode[];
  pool: Message[] = [];
  /** Every value any node ever reported as agreed, as text. */
  readonly decided = new Set<string>();
  readonly decidedBy = new Map<number, string>();

  constructor(size: number, quorums: number[], rule: ConsensusRule) {
    this.nodes = Array.from(
      { length: size },
      (_, i) =>
        new PaxosNode(
          { name: 0x7a0000000001 + i, uid: BigInt(1000 + i) },
          { quorum: quorums[i] ?? 0, consensusRule: rule },
        ),
    );
  }

  broadcast(from: number): void {
    const state = this.nodes[from]!.state();
    for (let to = 0; to < this.nodes.length; to++) if (to !== from) this.pool.push({ to, state });
  }

  note(i: number): void {
    const agreed = this.nodes[i]!.consensus();
    if (!agreed) return;
    const text = agreed.value.join(",");
    this.decided.add(text);
    this.decidedBy.set(i, text);
  }

  /** The 5 s tick of an awaiting node: propose and broadcast (8.6.3). */
  tick(i: number): void {
    const node = this.nodes[i]!;
    if (node.quorum === 0) return;
    node.propose();
    this.broadcast(i);
    this.note(i);
  }

  /** 8.2.2 step 4 for the message at `index`; `keep` leaves a copy behind (duplication). */
  deliver(index: number, keep: boolean): void {
    const [m] = keep ? [this.pool[index]!] : this.pool.splice(index, 1);
    const receipt = this.nodes[m!.to]!.receive(m!.state);
    if (receipt.changed) this.broadcast(m!.to);
    this.note(m!.to);
  }
}

type Event =
  | { kind: "deliver"; pick: number; keep: boolean }
  | { kind: "drop"; pick: number }
  | { kind: "tick"; node: number };

const events = fc.array(
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant("deliver" as const),
        pick: fc.nat(),
        keep: fc.boolean(),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("drop" as const), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("tick" as const), node: fc.nat() }) },
  ),
  { maxLength: 300, size: "max" },
);

function chaos(cluster: Cluster, script: Event[]): void {
  for (const e of script) {
    if (e.kind === "tick") {
      cluster.tick(e.node % cluster.nodes.length);
    } else if (cluster.pool.length > 0) {
      const index = e.pick % cluster.pool.length;
      if (e.kind === "drop") cluster.pool.splice(index, 1);
      else cluster.deliver(index, e.keep);
    }
  }
}

describe("simulated clusters of 1–7 electors (fast-check)", () => {
  it("safety: every value any node reports as agreed is the same, under loss, duplication and reordering", () => {
    let decidedRuns = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }),
        events,
        (size, awaiting, script) => {
          const q = quorumFor(size);
          // Awaiting nodes have the fixed quorum; the others are idle acceptors (quorum 0).
          const cluster = new Cluster(
            size,
            awaiting.map((w) => (w ? q : 0)),
            "ballot",
          );
          chaos(cluster, script);
          expect(cluster.decided.size).toBeLessThanOrEqual(1);
          if (cluster.decided.size === 1) decidedRuns++;
        },
      ),
      { numRuns: 400 },
    );
    expect(decidedRuns).toBeGreaterThan(40); // not vacuous: many runs do reach consensus
  });

  it("liveness: after any chaos, one round of ticks and fair delivery bring everyone to the same consensus", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        events,
        fc.array(fc.nat(), { minLength: 1 }),
        (size, script, order) => {
          const q = quorumFor(size);
          const cluster = new Cluster(size, Array<number>(size).fill(q), "ballot");
          chaos(cluster, script);
          for (let i = 0; i < size; i++) cluster.tick(i);
          let steps = 0;
          while (cluster.pool.length > 0) {
            expect(++steps).toBeLessThan(100_000);
            cluster.deliver(order[steps % order.length]! % cluster.pool.length, false);
          }
          const values = cluster.nodes.map((n) => n.consensus()?.value.join(","));
          expect(values.every((v) => v !== undefined)).toBe(true);
          expect(new Set(values).size).toBe(1);
          expect(cluster.decided.size).toBe(1);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("Weave's origin rule can disagree (why the default counts by round)", () => {
  // Three electors, quorum 2. A's value [A B] is accepted by A in round 1; C, proposing round 3
  // with promises from A and C, adopts it (origin (1,A)) and, counting by origin, sees A and
  // itself and decides [A B]. A then promises B's round 4 before hearing of C's accept; B's
  // round-4 accept request takes B's own round-2 value [A B C] (higher than A's round 1), A
  // accepts it, and A decides [A B C].
  function run(rule: ConsensusRule): {
    c: AcceptedValue | undefined;
    a: AcceptedValue | undefined;
  } {
    const a = new PaxosNode(A, { quorum: 2, consensusRule: rule });
    const b = new PaxosNode(B, { quorum: 2, consensusRule: rule });
    const c = new PaxosNode(C, { quorum: 2, consensusRule: rule });
    a.propose();
    b.receive(a.state());
    a.receive(b.state()); // A accepts (1,A) [A B]
    b.propose(); // (2,B)
    c.receive(b.state());
    b.receive(c.state()); // B accepts (2,B) [A B C]
    c.propose(); // (3,C)
    const c3 = c.state();
    a.receive(c3); // A promises (3,C), still accepted (1,A)
    const cDecided = c.receive(a.state()).consensus; // C accepts (3,C) with origin (1,A)
    b.receive(c3);
    b.propose(); // (4,B)
    a.receive(b.state()); // A promises (4,B)
    b.receive(a.state()); // B accepts (4,B), value of its own (2,B)
    const aDecided = a.receive(b.state()).consensus; // A accepts (4,B)
    return { c: cDecided, a: aDecided };
  }

  it("origin rule (Weave 2.8): C decides [A B], A decides [A B C]", () => {
    const { a, c } = run("origin");
    expect(c?.value).toEqual([A.name, B.name]);
    expect(a?.value).toEqual([A.name, B.name, C.name]);
  });

  it("ballot rule: C does not decide on a stale round-1 accept; only [A B C] is agreed", () => {
    const { a, c } = run("ballot");
    expect(c).toBeUndefined();
    expect(a?.value).toEqual([A.name, B.name, C.name]);
  });
});
