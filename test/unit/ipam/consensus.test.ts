import { afterEach, describe, expect, it, vi } from "vitest";
import {
  CONSENSUS_TICK_MS,
  ConsensusDriver,
  type ConsensusDriverOptions,
  type IntervalScheduler,
} from "../../../src/ipam/consensus.js";
import { PaxosError, PaxosNode, PaxosObserver, zeroClaims } from "../../../src/ipam/paxos.js";
import type { NodeId, PaxosState } from "../../../src/ipam/types.js";
import type { PeerName } from "../../../src/wire/peer-name.js";

const A: NodeId = { name: 0x7a0000000001, uid: 0x1111111111111111n };
const B: NodeId = { name: 0x7a0000000002, uid: 0x2222222222222222n };

class FakeScheduler implements IntervalScheduler {
  intervals = new Map<number, { fn: () => void; ms: number }>();
  #next = 1;
  setInterval(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.intervals.set(id, { fn, ms });
    return id;
  }
  clearInterval(handle: unknown): void {
    this.intervals.delete(handle as number);
  }
  fire(): void {
    for (const { fn } of [...this.intervals.values()]) fn();
  }
}

interface Harness {
  driver: ConsensusDriver;
  scheduler: FakeScheduler;
  sent: { paxos: PaxosState | undefined; ring: PeerName[] | undefined }[];
  rings: PeerName[][];
  peerReads: () => number;
}

function harness(
  participant: PaxosNode | PaxosObserver,
  extra: Partial<ConsensusDriverOptions> = {},
): Harness {
  const scheduler = new FakeScheduler();
  const sent: Harness["sent"] = [];
  const rings: PeerName[][] = [];
  let reads = 0;
  const driver: ConsensusDriver = new ConsensusDriver({
    participant,
    givenPeers: () => {
      reads++;
      return 2;
    },
    scheduler,
    broadcast: () =>
      sent.push({
        ring: rings.at(-1),
        paxos: rings.length > 0 ? undefined : driver.paxosState(),
      }),
    createRing: (members) => rings.push(members),
    ...extra,
  });
  return { driver, scheduler, sent, rings, peerReads: () => reads };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("awaiting consensus (8.6.3)", () => {
  it("idle until first needed; then quorum fixed once, propose and broadcast, again every 5 s", () => {
    const h = harness(new PaxosNode(A));
    expect(h.driver.phase).toBe("idle");
    expect(h.driver.status()).toBe("idle");
    expect(h.driver.quorum).toBe(0);
    expect(h.driver.paxosState()).toEqual([]); // idle elector: empty, present map
    expect(h.scheduler.intervals.size).toBe(0);

    h.driver.start();
    expect(h.driver.phase).toBe("awaiting");
    expect(h.driver.quorum).toBe(2); // T = 1 + 2 given peers = 3 → 2
    expect(h.driver.status()).toBe("awaiting consensus (quorum: 2, known: 1)");
    expect(h.sent).toHaveLength(1);
    expect(h.sent[0]!.paxos?.[0]?.claims.promise.round).toBe(1n);
    expect([...h.scheduler.intervals.values()].map((i) => i.ms)).toEqual([CONSENSUS_TICK_MS]);

    h.driver.start(); // a second allocation: nothing new
    expect(h.sent).toHaveLength(1);

    h.scheduler.fire();
    h.scheduler.fire();
    expect(h.sent).toHaveLength(3);
    expect(h.sent.map((s) => s.paxos?.[0]?.claims.promise.round)).toEqual([1n, 2n, 3n]);
    expect(h.peerReads()).toBe(1); // quorum evaluated once
    expect(h.rings).toEqual([]);
  });

  it("consensus=N fixes the quorum regardless of the given peers", () => {
    const h = harness(new PaxosNode(A), { initCount: 5 });
    h.driver.start();
    expect(h.driver.quorum).toBe(3);
    expect(() => harness(new PaxosNode(A), { initCount: 0 })).toThrow(RangeError);
  });

  it("quorum 1 creates the ring at once, broadcasts it, and stops ticking", () => {
    const h = harness(new PaxosNode(A), { givenPeers: () => 0 });
    h.driver.start();
    expect(h.rings).toEqual([[A.name]]);
    expect(h.sent.map((s) => s.ring)).toEqual([undefined, [A.name]]);
    expect(h.driver.status()).toBe("ready");
    expect(h.scheduler.intervals.size).toBe(0);
    h.driver.tick();
    expect(h.sent).toHaveLength(2);
  });

  it("two drivers reach consensus; the decider creates and broadcasts the ring", () => {
    const a = harness(new PaxosNode(A), { givenPeers: () => 1 });
    const b = harness(new PaxosNode(B), { givenPeers: () => 1 });
    a.driver.start();
    b.driver.start();
    // Deliver everything both ways until quiet; a ring is merged by the receiver (step 2).
    const cursor = { a: 0, b: 0 };
    for (let round = 0; round < 20; round++) {
      for (const [from, to, key] of [
        [a, b, "a"],
        [b, a, "b"],
      ] as const) {
        while (cursor[key] < from.sent.length) {
          const m = from.sent[cursor[key]++]!;
          if (to.driver.phase === "done") continue;
          if (m.ring) {
            to.rings.push(m.ring);
            to.driver.ringEstablished();
          } else to.driver.receivePaxos(m.paxos!);
        }
      }
    }
    expect(a.driver.status()).toBe("ready");
    expect(b.driver.status()).toBe("ready");
    expect(a.rings.at(-1)).toEqual([A.name, B.name]);
    expect(b.rings.at(-1)).toEqual([A.name, B.name]);
  });

  it("an idle elector still promises and accepts (quorum 0), broadcasting its changes, never deciding", () => {
    const h = harness(new PaxosNode(B));
    const proposer = new PaxosNode(A, { quorum: 1 });
    proposer.propose(); // quorum 1: accepted at once
    h.driver.receivePaxos(proposer.state());
    expect(h.sent).toHaveLength(1);
    expect(h.driver.phase).toBe("idle");
    expect(h.rings).toEqual([]);
    h.driver.receivePaxos(proposer.state()); // nothing learned: no broadcast
    expect(h.sent).toHaveLength(1);
  });

  it("a ring from a peer ends the wait and the timer", () => {
    const h = harness(new PaxosNode(A));
    h.driver.start();
    h.driver.ringEstablished();
    expect(h.driver.status()).toBe("ready");
    expect(h.scheduler.intervals.size).toBe(0);
    h.driver.receivePaxos([{ node: B, claims: zeroClaims() }]);
    h.driver.start();
    expect(h.sent).toHaveLength(1);
  });

  it("a refused Paxos map throws PaxosError and broadcasts nothing", () => {
    const h = harness(new PaxosNode(A));
    const bad: PaxosState = [{ node: { name: -5, uid: 1n }, claims: zeroClaims() }];
    expect(() => h.driver.receivePaxos(bad)).toThrow(PaxosError);
    expect(h.sent).toHaveLength(0);
  });

  it("uses real intervals by default (5 s)", () => {
    vi.useFakeTimers();
    let count = 0;
    const driver = new ConsensusDriver({
      participant: new PaxosNode(A),
      givenPeers: () => 3,
      broadcast: () => count++,
      createRing: () => undefined,
    });
    driver.start();
    expect(count).toBe(1);
    vi.advanceTimersByTime(4999);
    expect(count).toBe(1);
    vi.advanceTimersByTime(1);
    expect(count).toBe(2);
    driver.stop();
    vi.advanceTimersByTime(20_000);
    expect(count).toBe(2);
  });
});

describe("ring requests (8.2.2 step 5, 8.6.4)", () => {
  it("an elector starts consensus for a ring request from a known sender only", () => {
    const h = harness(new PaxosNode(A));
    h.driver.receiveRingRequest(false);
    expect(h.driver.phase).toBe("idle");
    h.driver.receiveRingRequest(true);
    expect(h.driver.phase).toBe("awaiting");
    expect(h.sent).toHaveLength(1);
  });

  it("an observer shows priming, sends ring requests (no Paxos) every 5 s, ignores Paxos", () => {
    const h = harness(new PaxosObserver());
    expect(h.driver.status()).toBe("priming");
    expect(h.driver.paxosState()).toBeUndefined();
    h.driver.receiveRingRequest(true);
    expect(h.driver.phase).toBe("idle");
    h.driver.start();
    expect(h.driver.status()).toBe("priming");
    expect(h.driver.quorum).toBe(0);
    expect(h.peerReads()).toBe(0);
    expect(h.sent).toEqual([{ paxos: undefined, ring: undefined }]);
    h.scheduler.fire();
    expect(h.sent).toHaveLength(2);
    h.driver.receivePaxos([{ node: B, claims: zeroClaims() }]);
    expect(h.sent).toHaveLength(2);
    h.driver.ringEstablished();
    expect(h.driver.status()).toBe("ready");
    expect(h.scheduler.intervals.size).toBe(0);
  });
});
