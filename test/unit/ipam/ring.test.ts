import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  MAX_RING_ENTRIES,
  NOTHING_IN_USE,
  Ring,
  RingError,
  donate,
} from "../../../src/ipam/ring.js";
import { Space, normalizeRanges, rangesEqual, subtractRanges } from "../../../src/ipam/space.js";
import type { Range, RingData, RingEntry } from "../../../src/ipam/types.js";
import type { PeerName } from "../../../src/wire/peer-name.js";

// Inputs of spec 8.12 / the V20–V30 block.
const A = 0x7a0000000001;
const B = 0x7a0000000002;
const C = 0x7a0000000003;
/** "a.b.c.d" → uint32. */
const ip = (s: string): number => s.split(".").reduce((n, o) => n * 256 + Number(o), 0);
const r = (start: string, end: string): Range => ({ start: ip(start), end: ip(end) });
const START = ip("198.18.128.0");
const END = ip("198.18.192.0");
const e = (token: string, peer: PeerName, version: number, free: number): RingEntry => ({
  token: ip(token),
  peer,
  version,
  free,
});
const data = (entries: RingEntry[], seeds: PeerName[], peer: PeerName = A): RingData => ({
  start: START,
  end: END,
  peer,
  entries,
  seeds,
});
/** Ring 1 (V20): ClaimForPeers([A, B]). */
const RING1 = [e("198.18.128.0", A, 0, 8192), e("198.18.160.0", B, 0, 8192)];
/** Ring 2 (V21, decoded): A granted 144.0/20 to B, then reported 4094 free. */
const RING2 = [
  e("198.18.128.0", A, 2, 4094),
  e("198.18.144.0", B, 0, 4096),
  e("198.18.160.0", B, 0, 8192),
];
/** An in-use predicate: addresses `used` are in use. */
const using =
  (...used: string[]) =>
  (range: Range): boolean =>
    used.some((u) => ip(u) >= range.start && ip(u) < range.end);

/** Runs `f`, expects a RingError, and returns it. */
function refused(f: () => unknown): RingError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(RingError);
    return err as RingError;
  }
  throw new Error("expected a RingError");
}

describe("V28 initial split (ClaimForPeers)", () => {
  it("one peer: the whole /18", () => {
    // [198.18.128.0-198.18.191.255 owner A size 16384]
    expect(Ring.split(START, END, [A])).toEqual([e("198.18.128.0", A, 0, 16384)]);
  });

  it("two peers: halves", () => {
    // [128.0-159.255 A 8192] [160.0-191.255 B 8192]
    expect(Ring.split(START, END, [A, B])).toEqual(RING1);
  });

  it("three peers in the order given [B A C]: half, quarter, quarter", () => {
    // [128.0-159.255 B 8192] [160.0-175.255 A 4096] [176.0-191.255 C 4096]
    expect(Ring.split(START, END, [B, A, C])).toEqual([
      e("198.18.128.0", B, 0, 8192),
      e("198.18.160.0", A, 0, 4096),
      e("198.18.176.0", C, 0, 4096),
    ]);
  });

  it("claimForPeers sorts and de-duplicates first, and records the seeds", () => {
    const ring = new Ring(START, END, A);
    ring.claimForPeers([C, B, A, B]);
    expect(ring.entries()).toEqual([
      e("198.18.128.0", A, 0, 8192),
      e("198.18.160.0", B, 0, 4096),
      e("198.18.176.0", C, 0, 4096),
    ]);
    expect(ring.seeds).toEqual([A, B, C]);
    expect(() => ring.claimForPeers([A])).toThrow(/non-empty/);
  });

  it("more peers than addresses: the surplus gets nothing", () => {
    expect(Ring.split(0, 4, [1, 2, 3, 4, 5, 6])).toEqual([
      { token: 0, peer: 1, version: 0, free: 1 },
      { token: 1, peer: 2, version: 0, free: 1 },
      { token: 2, peer: 4, version: 0, free: 1 },
      { token: 3, peer: 5, version: 0, free: 1 },
    ]);
  });

  it("independent creations from the same list merge as no-ops", () => {
    const a = new Ring(START, END, A);
    a.claimForPeers([A, B]);
    const b = new Ring(START, END, B);
    b.claimForPeers([B, A]);
    expect(a.merge(b.toData())).toBe(false);
    expect(a.entries()).toEqual(RING1);
  });
});

describe("V21 local changes", () => {
  it("grant 198.18.144.0–159.255 to B, then report 4094 free", () => {
    const ring = new Ring(START, END, A);
    ring.claimForPeers([A, B]);
    ring.grantRangeToHost(ip("198.18.144.0"), ip("198.18.160.0"), B);
    // ring 2 after GrantRangeToHost: 128.0 A v1, 144.0 B v0, 160.0 B v0
    expect(ring.entries()).toEqual([
      e("198.18.128.0", A, 1, 4096),
      e("198.18.144.0", B, 0, 4096),
      e("198.18.160.0", B, 0, 8192),
    ]);
    // ReportFree(198.18.128.0: 4094) changed: true → v2
    expect(ring.reportFree((x) => (x.start === START ? 4094 : 0))).toBe(true);
    expect(ring.entries()).toEqual(RING2);
    expect(ring.reportFree((x) => (x.start === START ? 4094 : 0))).toBe(false);
  });

  it("grant in the middle of our range inserts a token and keeps what follows", () => {
    const ring = new Ring(START, END, A);
    ring.claimForPeers([A, B]);
    ring.grantRangeToHost(ip("198.18.130.0"), ip("198.18.131.0"), C);
    expect(ring.entries()).toEqual([
      e("198.18.128.0", A, 1, 512),
      e("198.18.130.0", C, 0, 256),
      e("198.18.131.0", A, 0, 7424),
      e("198.18.160.0", B, 0, 8192),
    ]);
    expect(ring.owner(ip("198.18.130.255"))).toBe(C);
    expect(ring.owner(ip("198.18.131.0"))).toBe(A);
  });

  it("grant up to the universe end keeps the wrap-around piece with a token at the start", () => {
    const ring = new Ring(0, 16, 1);
    ring.claimForPeers([1]);
    ring.grantRangeToHost(0, 16, 2); // everything: retarget, a token already sits at 0
    expect(ring.entries()).toEqual([{ token: 0, peer: 2, version: 1, free: 16 }]);

    const ring2 = Ring.fromData(
      {
        start: 0,
        end: 16,
        peer: 1,
        seeds: [],
        entries: [{ token: 4, peer: 1, version: 0, free: 16 }],
      },
      1,
    );
    ring2.grantRangeToHost(12, 16, 2);
    expect(ring2.entries()).toEqual([
      { token: 0, peer: 1, version: 0, free: 4 },
      { token: 4, peer: 1, version: 1, free: 8 },
      { token: 12, peer: 2, version: 0, free: 4 },
    ]);
    ring2.grantRangeToHost(1, 3, 3); // inside the piece before the first token
    expect(ring2.entries()).toEqual([
      { token: 0, peer: 1, version: 1, free: 1 },
      { token: 1, peer: 3, version: 0, free: 2 },
      { token: 3, peer: 1, version: 0, free: 1 },
      { token: 4, peer: 1, version: 1, free: 8 },
      { token: 12, peer: 2, version: 0, free: 4 },
    ]);
    expect(() => ring2.grantRangeToHost(10, 14, 3)).toThrow(/not all ours/);
  });

  it("grant across several of our tokens re-targets them", () => {
    const ring = Ring.fromData(
      {
        start: 0,
        end: 64,
        peer: 1,
        seeds: [],
        entries: [
          { token: 0, peer: 1, version: 3, free: 16 },
          { token: 16, peer: 1, version: 5, free: 10 },
          { token: 32, peer: 2, version: 0, free: 32 },
        ],
      },
      1,
    );
    ring.grantRangeToHost(8, 20, 3);
    expect(ring.entries()).toEqual([
      { token: 0, peer: 1, version: 4, free: 8 },
      { token: 8, peer: 3, version: 0, free: 8 },
      { token: 16, peer: 3, version: 6, free: 4 },
      { token: 20, peer: 1, version: 0, free: 12 },
      { token: 32, peer: 2, version: 0, free: 32 },
    ]);
  });

  it("a range wrapping the origin reports its free count into its token", () => {
    const ring = Ring.fromData(
      {
        start: 0,
        end: 16,
        peer: 1,
        seeds: [],
        entries: [
          { token: 4, peer: 2, version: 0, free: 8 },
          { token: 12, peer: 1, version: 0, free: 8 },
        ],
      },
      1,
    );
    expect(ring.ownedRanges()).toEqual([
      { start: 0, end: 4 },
      { start: 12, end: 16 },
    ]);
    expect(ring.reportFree((x) => x.end - x.start - 1)).toBe(true);
    expect(ring.entries()[1]).toEqual({ token: 12, peer: 1, version: 1, free: 6 });
  });
});

describe("V27 merge outcomes", () => {
  it("M1: B (fresh) <- A's ring 2: updated, B has ring 2", () => {
    const b = Ring.fromData(data(RING1, [A, B], B), B);
    const res = b.mergeReport(data(RING2, [A, B]));
    expect(res.updated).toBe(true);
    expect(b.entries()).toEqual(RING2);
    expect(res.gained).toEqual([r("198.18.144.0", "198.18.160.0")]);
    expect(res.lost).toEqual([]);
  });

  it("M2: ring seeded [B] <- ring seeded [A, B]: different seeds", () => {
    const ring = new Ring(START, END, B);
    ring.claimForPeers([B]);
    const before = ring.toData();
    const err = refused(() => ring.merge(data(RING1, [A, B])));
    expect(err.code).toBe("different-seeds");
    expect(err.ringText).toBe("Received ring was seeded differently from ours");
    expect(err.message).toBe(
      "IP allocation was seeded by different peers (received: [7a:00:00:00:00:01 7a:00:00:00:00:02], ours: [7a:00:00:00:00:02])",
    );
    expect(ring.toData()).toEqual(before);
    const nick = refused(() =>
      ring.merge(data(RING1, [A, B]), { nickname: (p) => (p === A ? "hostA" : undefined) }),
    );
    expect(nick.message).toContain("received: [7a:00:00:00:00:01(hostA) 7a:00:00:00:00:02]");
  });

  it("M3: empty ring over 198.18.0.0/18 <- ring 2: different range", () => {
    const ring = new Ring(ip("198.18.0.0"), ip("198.18.64.0"), B);
    const err = refused(() => ring.merge(data(RING2, [A, B])));
    expect(err.code).toBe("different-range");
    expect(err.ringText).toBe("Received range differs from ours");
    expect(err.message).toBe(
      "Incompatible IP allocation ranges (received: 198.18.128.0/18, ours: 198.18.0.0/18)",
    );
    expect(ring.isEmpty()).toBe(true);
  });

  it("M4: empty ring <- ring 2: adopts everything including the seeds", () => {
    const ring = new Ring(START, END, C);
    expect(ring.merge(data(RING2, [A, B]))).toBe(true);
    expect(ring.seeds).toEqual([A, B]);
    expect(ring.entries()).toEqual(RING2);
  });

  // A took B's token (v100), B took A's token (v100).
  const m5ours = () => {
    const a = new Ring(START, END, A);
    a.claimForPeers([A, B]);
    a.rmpeer(B);
    return a;
  };
  const m5theirs = () => {
    const b = new Ring(START, END, B);
    b.claimForPeers([A, B]);
    b.rmpeer(A);
    return b.toData();
  };

  it("M5: conflicting takeovers, no allocations: updated, 128.0 → B v100, 160.0 → A v100", () => {
    const a = m5ours();
    expect(a.entries()).toEqual([e("198.18.128.0", A, 0, 8192), e("198.18.160.0", A, 100, 8192)]);
    const res = a.mergeReport(m5theirs(), { inUse: NOTHING_IN_USE });
    expect(res.updated).toBe(true);
    expect(a.entries()).toEqual([e("198.18.128.0", B, 100, 8192), e("198.18.160.0", A, 100, 8192)]);
    // weft: the range taken away is reported for the space to drop (Weave asserts instead).
    expect(res.lost).toEqual([r("198.18.128.0", "198.18.160.0")]);
  });

  it("M6: same as M5 but A has allocations: refused with Weave's text, A untouched", () => {
    const a = m5ours();
    const before = a.toData();
    const err = refused(() => a.merge(m5theirs(), { inUse: using("198.18.128.1") }));
    expect(err.code).toBe("update-for-range-i-own");
    expect(err.message).toBe(
      "Received update for IP range I own at 198.18.128.0 v0: incoming message says owner 7a:00:00:00:00:02 v100",
    );
    expect(a.toData()).toEqual(before);
  });

  it("M7: a stale copy of our own token at v100: ours re-versioned to v101, updated=false", () => {
    const a = Ring.fromData(data(RING1, [A, B]), A);
    const theirs = [e("198.18.128.0", A, 100, 8192), e("198.18.160.0", B, 0, 8192)];
    const res = a.mergeReport(data(theirs, [A, B], B));
    expect(res.updated).toBe(false);
    expect(res.changed).toBe(true);
    expect(a.entries()).toEqual([e("198.18.128.0", A, 101, 8192), e("198.18.160.0", B, 0, 8192)]);
    // The same ring again changes nothing.
    expect(a.mergeReport(a.toData()).changed).toBe(false);
    expect(res.gained).toEqual([]);
    expect(res.lost).toEqual([]);
  });

  // M8/M9: A seeded [A, C].
  const m89ours = () => {
    const a = new Ring(START, END, A);
    a.claimForPeers([A, C]);
    return a;
  };

  it("M8: B holds A's token at v100 (rmpeer of a live A), nothing in use", () => {
    // Weave: the merge "repairs inconsistent data", returns no error, then the weaver exits on
    // its ring/space assertion. weft: the same ring, and the lost range is reported so that the
    // allocator drops it from its space (all of it is free) instead of exiting.
    const a = m89ours();
    const theirs = [e("198.18.128.0", B, 100, 8192), e("198.18.160.0", C, 0, 8192)];
    const res = a.mergeReport(data(theirs, [A, C], B), { inUse: NOTHING_IN_USE });
    expect(res.updated).toBe(true);
    expect(a.entries()).toEqual(theirs);
    expect(res.lost).toEqual([r("198.18.128.0", "198.18.160.0")]);
    expect(a.ownedRanges()).toEqual([]);
  });

  it("M8 with an address in use: refused, untouched", () => {
    const a = m89ours();
    const before = a.toData();
    const theirs = [e("198.18.128.0", B, 100, 8192), e("198.18.160.0", C, 0, 8192)];
    const err = refused(() => a.merge(data(theirs, [A, C], B), { inUse: using("198.18.130.9") }));
    expect(err.code).toBe("update-for-range-i-own");
    expect(a.toData()).toEqual(before);
  });

  const m9theirs = data(
    [e("198.18.128.0", A, 1, 4096), e("198.18.144.0", B, 0, 4096), e("198.18.160.0", C, 0, 8192)],
    [A, C],
    B,
  );

  it("M9: a foreign token splits our range before the first token we keep, nothing in use", () => {
    // Weave: A's token is re-versioned (not `prevOwner`), B's token is inserted unchecked, then
    // the weaver exits. weft: the same ring (our free clamped by step 5), the lost half reported.
    const a = m89ours();
    const res = a.mergeReport(m9theirs, { inUse: NOTHING_IN_USE });
    expect(res.updated).toBe(true);
    expect(a.entries()).toEqual([
      e("198.18.128.0", A, 2, 4096),
      e("198.18.144.0", B, 0, 4096),
      e("198.18.160.0", C, 0, 8192),
    ]);
    expect(res.lost).toEqual([r("198.18.144.0", "198.18.160.0")]);
  });

  it("M9 with an address in use in the half taken: weft refuses (Weave would exit)", () => {
    const a = m89ours();
    const before = a.toData();
    const err = refused(() => a.merge(m9theirs, { inUse: using("198.18.150.3") }));
    expect(err.code).toBe("in-use-range-taken");
    expect(err.message).toBe(
      "Peer 7a:00:00:00:00:02 says it owns the IP range from 198.18.144.0, which I think I own",
    );
    expect(a.toData()).toEqual(before);
  });

  it("M9 with addresses in use only in the half we keep: accepted", () => {
    const a = m89ours();
    expect(a.merge(m9theirs, { inUse: using("198.18.128.1") })).toBe(true);
  });

  it("the ring's default in-use check is used when merge is given none", () => {
    const a = m89ours();
    a.setInUseCheck(using("198.18.150.3"));
    expect(refused(() => a.merge(m9theirs)).code).toBe("in-use-range-taken");
  });
});

describe("8.4.5 walk details", () => {
  const U = { start: 0, end: 64 };
  const ring = (us: PeerName, entries: RingEntry[], seeds: PeerName[] = []): Ring =>
    Ring.fromData({ ...U, peer: us, entries, seeds }, us);
  const rd = (entries: RingEntry[], seeds: PeerName[] = []): RingData => ({
    ...U,
    peer: 9,
    entries,
    seeds,
  });
  const t = (token: number, peer: PeerName, version: number, free: number): RingEntry => ({
    token,
    peer,
    version,
    free,
  });

  it("4b: a foreign token inside a range we own, after a token we keep, with allocations", () => {
    const ours = ring(1, [t(0, 2, 0, 16), t(16, 1, 0, 48)]);
    const err = refused(() =>
      ours.merge(rd([t(0, 2, 0, 16), t(16, 1, 0, 8), t(24, 3, 0, 8)]), {
        inUse: using("0.0.0.30"),
      }),
    );
    expect(err.code).toBe("peer-owns-my-range");
    expect(err.message).toBe(
      "Peer 00:00:00:00:00:03 says it owns the IP range from 0.0.0.24, which I think I own",
    );
  });

  it("4b is checked against [their token, our next token) only", () => {
    const ours = ring(1, [t(0, 1, 0, 32), t(32, 2, 0, 32)]);
    // Address 40 is "in use" but not in [24, 32): Weave's check passes; weft's loss check
    // does not look at 40 either (it is not ours).
    expect(
      ours.merge(rd([t(0, 1, 0, 24), t(24, 3, 0, 8), t(32, 2, 0, 32)]), {
        inUse: using("0.0.0.40"),
      }),
    ).toBe(true);
  });

  it("leftover check: a foreign token after our last kept token errors without an alloc check", () => {
    const ours = ring(1, [t(0, 2, 0, 32), t(32, 1, 0, 32)]);
    const err = refused(() => ours.merge(rd([t(0, 2, 0, 32), t(32, 1, 0, 16), t(48, 3, 0, 16)])));
    expect(err.code).toBe("peer-owns-my-range");
    expect(err.message).toContain("from 0.0.0.48, which I think I own");
    // A leftover owned by us is fine (and the later ones are not checked).
    expect(ours.merge(rd([t(0, 2, 0, 32), t(32, 1, 0, 16), t(48, 1, 0, 8), t(56, 3, 0, 8)]))).toBe(
      true,
    );
  });

  it("equal versions, different owner: larger free wins, ours on a tie", () => {
    const ours = ring(1, [t(0, 2, 4, 10), t(32, 3, 0, 32)]);
    expect(ours.merge(rd([t(0, 4, 4, 10), t(32, 3, 0, 32)]))).toBe(false);
    expect(ours.entries()[0]!.peer).toBe(2);
    expect(ours.merge(rd([t(0, 4, 4, 11), t(32, 3, 0, 32)]))).toBe(true);
    expect(ours.entries()[0]!.peer).toBe(4);
  });

  it("equal versions, different owner, ours owned by us with allocations: inconsistent entries", () => {
    const ours = ring(1, [t(0, 1, 4, 10), t(32, 3, 0, 32)]);
    const err = refused(() =>
      ours.merge(rd([t(0, 4, 4, 20), t(32, 3, 0, 32)]), { inUse: using("0.0.0.3") }),
    );
    expect(err.code).toBe("inconsistent-entries");
    expect(err.message).toBe(
      "Inconsistent entries for 0.0.0.0: owned by 00:00:00:00:00:01 but incoming message says 00:00:00:00:00:04",
    );
    // Without allocations the larger free wins and weft reports the loss.
    const res = ours.mergeReport(rd([t(0, 4, 4, 20), t(32, 3, 0, 32)]));
    expect(res.lost).toEqual([{ start: 0, end: 32 }]);
  });

  it("equal versions, same owner: their free is ignored", () => {
    const ours = ring(1, [t(0, 2, 1, 10)]);
    expect(ours.merge(rd([t(0, 2, 1, 60)]))).toBe(false);
    expect(ours.entries()[0]!.free).toBe(10);
  });

  it("step 5 clamps our free counts to the new distances", () => {
    // A token of ours we did not know (we restarted without our data) splits our range.
    const ours = ring(2, [t(0, 2, 0, 64)]);
    expect(ours.merge(rd([t(0, 2, 0, 32), t(32, 2, 0, 32)]))).toBe(true);
    expect(ours.entries()).toEqual([t(0, 2, 0, 32), t(32, 2, 0, 32)]);
  });

  it("validity errors of the received ring, with Weave's texts, leave us untouched", () => {
    const ours = ring(1, [t(0, 1, 0, 64)]);
    const before = ours.toData();
    const cases: [RingEntry[], string, string][] = [
      [[t(8, 2, 0, 0), t(4, 2, 0, 0)], "not-sorted", "Ring not sorted"],
      [[t(8, 2, 0, 0), t(8, 3, 0, 0)], "token-repeated", "Token appears twice in ring"],
      [[t(64, 2, 0, 0)], "token-out-of-range", "Token is out of range"],
      [
        [t(0, 2, 0, 10), t(8, 3, 0, 0)],
        "too-much-free",
        "Entry 0.0.0.0-0.0.0.8 reporting too much free space: 10 > 8",
      ],
      [[t(0, 2, -1, 0)], "invalid-field", "Ring entry has an invalid field"],
    ];
    for (const [entries, code, text] of cases) {
      const err = refused(() => ours.merge(rd(entries)));
      expect(err.code).toBe(code);
      expect(err.message).toBe(text);
      expect(ours.toData()).toEqual(before);
    }
    // Below the universe start.
    const high = Ring.fromData({ start: 16, end: 64, peer: 1, seeds: [], entries: [] }, 1);
    expect(
      refused(() =>
        high.merge({ start: 16, end: 64, peer: 2, seeds: [], entries: [t(8, 2, 0, 0)] }),
      ).code,
    ).toBe("token-out-of-range");
  });

  it("absurd token counts are refused", () => {
    const many = Array.from({ length: MAX_RING_ENTRIES + 1 }, (_, k) => t(k, 2, 0, 0));
    const big = { start: 0, end: 2 ** 20, peer: 2, seeds: [], entries: many };
    expect(refused(() => new Ring(0, 2 ** 20, 1).merge(big)).code).toBe("too-many-entries");
    expect(refused(() => Ring.fromData(big, 1)).code).toBe("too-many-entries");
  });

  it("merging our own state is a no-op", () => {
    const a = new Ring(START, END, A);
    a.claimForPeers([A, B, C]);
    a.grantRangeToHost(ip("198.18.130.0"), ip("198.18.131.0"), B);
    const before = a.toData();
    expect(a.merge(a.toData())).toBe(false);
    expect(a.toData()).toEqual(before);
  });
});

describe("V30 donation, and rmpeer / reset", () => {
  it("A donates to B's /24 request (V30 #4 → #6 → #7)", () => {
    const a = new Ring(START, END, A);
    a.claimForPeers([A, B]);
    const space = new Space();
    space.addFree(a.ownedRanges());
    expect(space.allocate(r("198.18.128.1", "198.18.191.255"))).toBe(ip("198.18.128.1"));
    a.reportFree((x) => space.numFreeIn(x));
    // #4: 128.0 A v1 free 8191 | 160.0 B v0 free 8192
    expect(a.entries()).toEqual([e("198.18.128.0", A, 1, 8191), e("198.18.160.0", B, 0, 8192)]);

    const block = donate(a, space, r("198.18.128.0", "198.18.129.0"), B);
    expect(block).toEqual(r("198.18.128.192", "198.18.129.0"));
    // #6: 128.0 A v2 free 192 | 128.192 B v0 free 64 | 129.0 A v0 free 7936 | 160.0 B v0 free 8192
    expect(a.entries()).toEqual([
      e("198.18.128.0", A, 2, 192),
      e("198.18.128.192", B, 0, 64),
      e("198.18.129.0", A, 0, 7936),
      e("198.18.160.0", B, 0, 8192),
    ]);
    expect(rangesEqual(space.ownedRanges(), a.ownedRanges())).toBe(true);
    // #7: after A's free-count report, 128.0 A v3 free 191.
    expect(a.reportFree((x) => space.numFreeIn(x))).toBe(true);
    expect(a.entries()[0]).toEqual(e("198.18.128.0", A, 3, 191));

    // B merges the reply and gains the block.
    const b = Ring.fromData(
      data([e("198.18.128.0", A, 1, 8191), e("198.18.160.0", B, 0, 8192)], [A, B], B),
      B,
    );
    const res = b.mergeReport(a.toData());
    expect(res.updated).toBe(true);
    expect(res.gained).toEqual([r("198.18.128.192", "198.18.129.0")]);

    // #8/#9: B's claim of 128.1, in use at A → nothing to give (kind 2, then kind 1).
    expect(donate(a, space, r("198.18.128.1", "198.18.128.2"), B)).toBeUndefined();
  });

  it("donor candidates (8.5.1) sum the free of the tokens reaching into the subnet", () => {
    const b = Ring.fromData(
      data(
        [
          e("198.18.128.0", A, 3, 191),
          e("198.18.128.192", B, 0, 64),
          e("198.18.129.0", A, 0, 7936),
          e("198.18.160.0", C, 0, 0),
        ],
        [A, B],
        B,
      ),
      B,
    );
    expect([...b.donorCandidates(r("198.18.128.0", "198.18.129.0"))]).toEqual([[A, 191]]);
    expect([...b.donorCandidates(r("198.18.128.0", "198.18.192.0"))]).toEqual([[A, 191 + 7936]]);
    expect([...b.donorCandidates(r("198.18.170.0", "198.18.171.0"))]).toEqual([]);
  });

  it("rmpeer hands a dead peer's tokens to us at +100; reset hands ours to an heir", () => {
    const a = new Ring(START, END, A);
    a.claimForPeers([A, B, C]);
    expect(() => a.rmpeer(A)).toThrow();
    expect(a.rmpeer(B)).toEqual([r("198.18.160.0", "198.18.176.0")]);
    expect(a.entries()[1]).toEqual(e("198.18.160.0", A, 100, 4096));
    expect(a.rmpeer(B)).toEqual([]);
    expect(a.ownedRanges()).toEqual([r("198.18.128.0", "198.18.176.0")]);

    expect(a.chooseHeir((p) => p === C, [])).toBe(C);
    expect(a.chooseHeir(() => false, [B])).toBe(C);
    expect(a.chooseHeir((p) => p === B, [B, A])).toBe(B);
    expect(a.handOver(C)).toEqual([r("198.18.128.0", "198.18.176.0")]);
    expect(a.entries().map((x) => [x.peer, x.version])).toEqual([
      [C, 100],
      [C, 200],
      [C, 0],
    ]);
    expect(a.ownedRanges()).toEqual([]);
    expect(new Ring(START, END, A).chooseHeir(() => true, [A])).toBeUndefined();
  });

  it("toData / fromData round-trip, owner and ranges", () => {
    const a = Ring.fromData(data(RING2, [A, B]), A);
    expect(Ring.fromData(a.toData(), A).toData()).toEqual(a.toData());
    expect(a.owner(ip("198.18.143.255"))).toBe(A);
    expect(a.owner(ip("198.18.144.0"))).toBe(B);
    expect(a.owner(ip("198.18.192.0"))).toBeUndefined();
    expect(new Ring(START, END, A).owner(START)).toBeUndefined();
    expect(a.ownedRanges(B)).toEqual([r("198.18.144.0", "198.18.192.0")]);
    expect(a.rangesOf(B).map((x) => x.token)).toEqual([ip("198.18.144.0"), ip("198.18.160.0")]);
    expect(a.freeOf(B)).toBe(4096 + 8192);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface SimPeer {
  name: PeerName;
  ring: Ring;
  space: Space;
  alive: boolean;
  used: Set<number>;
}

type Msg =
  | { kind: "ring"; from: number; to: number; data: RingData }
  | { kind: "request"; from: number; to: number; range: Range };

/**
 * A mesh of simulated allocators (ring + space each), driven by a list of actions: allocations
 * (asking a donor when out of space), releases, donations on request, gossip, broadcasts,
 * partitions and heals, leaving peers (with or without a hand-over), messages delivered in any
 * order. Checks the safety invariants after every step.
 */
class Mesh {
  peers: SimPeer[];
  queue: Msg[] = [];
  group: number[];
  errors: unknown[] = [];
  snapshots: RingData[] = [];
  stats = { grants: 0, denials: 0, handOvers: 0, rmpeers: 0, gained: 0, partitions: 0 };
  readonly start: number;
  readonly end: number;

  constructor(n: number, seeds: number, size: number, rand: () => number) {
    this.start = 0x0a000000;
    this.end = this.start + size;
    const names = Array.from({ length: n }, (_, k) => 0x100 + k * 7);
    const seedNames = names.slice(0, seeds);
    this.peers = names.map((name, k) => {
      const ring = new Ring(this.start, this.end, name);
      const space = new Space();
      // Seed mode: the seed peers build the same ring; the others join with an empty ring.
      if (k < seeds || rand() < 0.2) ring.claimForPeers(seedNames);
      space.addFree(ring.ownedRanges());
      ring.setInUseCheck((x) => space.hasAllocationsIn(x));
      return { name, ring, space, alive: true, used: new Set<number>() };
    });
    this.group = names.map(() => 0);
  }

  connected(a: number, b: number): boolean {
    return this.group[a] === this.group[b];
  }

  live(): SimPeer[] {
    return this.peers.filter((p) => p.alive);
  }

  report(p: SimPeer): void {
    p.ring.reportFree((x) => p.space.numFreeIn(x));
  }

  send(from: number, to: number): void {
    const p = this.peers[from]!;
    if (from === to || p.ring.isEmpty() || !this.connected(from, to)) return;
    this.queue.push({ kind: "ring", from, to, data: p.ring.toData() });
  }

  broadcast(from: number): void {
    this.peers.forEach((q, k) => {
      if (q.alive) this.send(from, k);
    });
  }

  receive(to: number, ring: RingData): boolean {
    const q = this.peers[to]!;
    const before = fingerprint(q.ring);
    try {
      const res = q.ring.mergeReport(ring);
      q.space.remove(res.lost);
      q.space.addFree(res.gained);
      if (res.gained.length > 0) this.stats.gained++;
      this.report(q);
    } catch (err) {
      this.errors.push(err);
    }
    return fingerprint(q.ring) !== before;
  }

  allocate(k: number, subnet: Range, rand: () => number): void {
    const p = this.peers[k]!;
    if (p.ring.isEmpty()) return;
    const a = p.space.allocate(subnet);
    if (a !== undefined) {
      p.used.add(a);
      this.report(p);
      return;
    }
    // 8.5.1: weighted random donor choice, first one we can reach.
    const donors = [...p.ring.donorCandidates(subnet)]
      .map(([peer, sum]) => ({ peer, weight: sum * rand() }))
      .sort((x, y) => y.weight - x.weight);
    for (const d of donors) {
      const to = this.peers.findIndex((q) => q.name === d.peer);
      if (to >= 0 && this.peers[to]!.alive && this.connected(k, to)) {
        this.queue.push({ kind: "request", from: k, to, range: subnet });
        return;
      }
    }
  }

  release(k: number, pick: number): void {
    const p = this.peers[k]!;
    const used = [...p.used];
    if (used.length === 0) return;
    const a = used[pick % used.length]!;
    p.used.delete(a);
    p.space.free(a);
    this.report(p);
  }

  deliver(index: number): void {
    const m = this.queue[index];
    if (m === undefined) return;
    const from = this.peers[m.from]!;
    const to = this.peers[m.to]!;
    if (!to.alive) {
      this.queue.splice(index, 1);
      return;
    }
    if (!this.connected(m.from, m.to)) return; // waits for a heal
    this.queue.splice(index, 1);
    if (m.kind === "ring") {
      this.receive(m.to, m.data);
      return;
    }
    if (!from.alive || to.ring.isEmpty()) return;
    // 8.5.2: donate, reply with the ring (before the free report), report, broadcast.
    const block = donate(to.ring, to.space, m.range, from.name);
    if (block === undefined) this.stats.denials++;
    else this.stats.grants++;
    this.send(m.to, m.from);
    this.report(to);
    if (block !== undefined) this.broadcast(m.to);
  }

  leave(k: number, handOver: boolean): void {
    const p = this.peers[k]!;
    if (this.live().length <= 1 || !p.alive) return;
    // A peer that goes away: nothing it had queued arrives any more.
    this.queue = this.queue.filter((m) => m.from !== k && m.to !== k);
    if (handOver && !p.ring.isEmpty()) {
      const heir = p.ring.chooseHeir(
        (name) => this.peers.some((q, j) => q.name === name && q.alive && this.connected(k, j)),
        this.live().map((q) => q.name),
      );
      if (heir !== undefined) {
        p.ring.handOver(heir);
        this.stats.handOvers++;
        p.space.clear();
        p.used.clear();
        this.broadcast(k);
      }
    }
    p.alive = false;
  }

  /** Safety after every step. */
  check(): void {
    const owner = new Float64Array(this.end - this.start);
    for (const p of this.live()) {
      // The ring and the space agree (Weave's assertion, which weft must never break). Plain
      // throws, not expect(): this runs thousands of times per case.
      if (!rangesEqual(p.space.ownedRanges(), p.ring.ownedRanges())) {
        throw new Error(`peer ${p.name}: space and ring disagree`);
      }
      // No address owned by two live peers, at any time.
      for (const x of p.space.ownedRanges()) {
        for (let a = x.start; a < x.end; a++) {
          const other = owner[a - this.start]!;
          if (other !== 0) throw new Error(`address ${a} owned by both ${other} and ${p.name}`);
          owner[a - this.start] = p.name;
        }
      }
      for (const a of p.used) {
        if (!p.space.owns(a) || p.space.isFree(a)) throw new Error(`${a} in use but not held`);
      }
    }
  }

  /** Heals, delivers everything, gossips until quiet, and rmpeers the dead owners. */
  settle(rand: () => number): void {
    this.group = this.group.map(() => 0);
    const quiesce = (): void => {
      for (let guard = 0; this.queue.length > 0; guard++) {
        if (guard > 100_000) throw new Error("queue does not drain");
        this.deliver(Math.floor(rand() * this.queue.length));
        this.check();
      }
      // Gossip through a hub (everyone → hub, hub → everyone) until nothing changes.
      const live = this.peers.map((_, k) => k).filter((k) => this.peers[k]!.alive);
      const hub = live[0]!;
      for (let round = 0; ; round++) {
        if (round > 50) throw new Error("gossip does not converge");
        let changed = false;
        for (const k of live) {
          const p = this.peers[k]!;
          if (k !== hub && !p.ring.isEmpty() && this.receive(hub, p.ring.toData())) changed = true;
        }
        const state = this.peers[hub]!.ring.toData();
        for (const k of live) if (k !== hub && this.receive(k, state)) changed = true;
        this.check();
        if (!changed) return;
      }
    };
    quiesce();
    const admin = this.live()[0]!;
    for (const dead of this.peers.filter((p) => !p.alive)) {
      const moved = admin.ring.rmpeer(dead.name);
      if (moved.length > 0) this.stats.rmpeers++;
      admin.space.addFree(moved);
    }
    this.report(admin);
    this.check();
    quiesce();
  }
}

/** [operation, peer, argument, argument] (see runMesh). */
const action = fc.tuple(fc.nat(15), fc.nat(1000), fc.nat(1000), fc.nat(1000));

function runMesh(
  n: number,
  seeds: number,
  sizeLog: number,
  actions: [number, number, number, number][],
  seed: number,
): Mesh {
  const rand = prng(seed);
  const size = 2 ** sizeLog;
  const mesh = new Mesh(n, seeds, size, rand);
  const subnet = (b: number): Range => {
    if (b % 5 === 0) return { start: mesh.start, end: mesh.end };
    const bs = Math.min(16, size);
    const at = (b % (size / bs)) * bs;
    return { start: mesh.start + at, end: mesh.start + at + bs };
  };
  for (const [op, a, b, c] of actions) {
    const k = a % n;
    if (op <= 4) {
      if (mesh.peers[k]!.alive) mesh.allocate(k, subnet(b), rand);
    } else if (op === 5) {
      if (mesh.peers[k]!.alive) mesh.release(k, b);
    } else if (op <= 10) {
      mesh.deliver(b % Math.max(1, mesh.queue.length));
    } else if (op === 11) {
      if (mesh.peers[k]!.alive && mesh.peers[b % n]!.alive) mesh.send(k, b % n);
    } else if (op === 12) {
      if (mesh.peers[k]!.alive) mesh.broadcast(k);
    } else if (op === 13) {
      const groups = 1 + (b % 3);
      const pr = prng(c);
      mesh.group = mesh.group.map(() => Math.floor(pr() * groups));
      if (groups > 1) mesh.stats.partitions++;
    } else if (op === 14) {
      mesh.group = mesh.group.map(() => 0);
    } else if (c % 3 === 0) {
      mesh.leave(k, b % 2 === 0);
    }
    mesh.check();
    if (c % 7 === 0) {
      const p = mesh.peers[k]!;
      if (p.alive && !p.ring.isEmpty()) mesh.snapshots.push(p.ring.toData());
    }
  }
  mesh.settle(rand);
  return mesh;
}

describe("ring properties", () => {
  it("a mesh of up to 50 rings: no address ever owned twice; all converge and cover the universe", () => {
    const seen = { grants: 0, denials: 0, handOvers: 0, rmpeers: 0, gained: 0, partitions: 0 };
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 50 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 6, max: 9 }),
        fc.array(action, { minLength: 20, maxLength: 400, size: "max" }),
        fc.nat(),
        (n, seeds0, sizeLog, actions, seed) => {
          const mesh = runMesh(n, Math.min(seeds0, n), sizeLog, actions, seed);
          expect(mesh.errors).toEqual([]);
          for (const [k, v] of Object.entries(mesh.stats)) seen[k as keyof typeof seen] += v;
          const live = mesh.live();
          // The only ring holders may all have left without a hand-over: nothing left to check.
          if (live.every((p) => p.ring.isEmpty())) return;
          const first = JSON.stringify(live[0]!.ring.toData().entries);
          for (const p of live) {
            expect(JSON.stringify(p.ring.toData().entries)).toBe(first);
            expect(p.ring.seeds).toEqual(live[0]!.ring.seeds);
          }
          // Every address of the universe owned by exactly one live peer (check() already
          // proved "at most one").
          let total = 0;
          for (const p of live)
            total += p.space.ownedRanges().reduce((s, x) => s + x.end - x.start, 0);
          expect(total).toBe(mesh.end - mesh.start);
          for (const p of live) {
            for (const x of p.space.ownedRanges())
              expect(live[0]!.ring.owner(x.start)).toBe(p.name);
          }
        },
      ),
      { numRuns: 60 },
    );
    // The runs did exercise the interesting paths.
    for (const v of Object.values(seen)) expect(v).toBeGreaterThan(0);
  }, 120_000);

  it("rings from one history merged in any order converge to the same ring", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 12 }),
        fc.array(action, { minLength: 50, maxLength: 200, size: "max" }),
        fc.nat(),
        fc.nat(),
        (n, actions, seed, orderSeed) => {
          const mesh = runMesh(n, n, 8, actions, seed);
          const snaps = mesh.snapshots;
          fc.pre(snaps.length > 0);
          const shuffle = <T>(xs: T[], rand: () => number): T[] => {
            const out = [...xs];
            for (let k = out.length - 1; k > 0; k--) {
              const j = Math.floor(rand() * (k + 1));
              [out[k], out[j]] = [out[j]!, out[k]!];
            }
            return out;
          };
          const observer = (order: RingData[]): RingData => {
            const ring = new Ring(mesh.start, mesh.end, 0xfeed);
            for (const s of order) ring.merge(s);
            return { ...ring.toData(), peer: 0 };
          };
          const x = observer(snaps);
          expect(observer(shuffle(snaps, prng(orderSeed)))).toEqual(x);
          expect(observer([...snaps].reverse())).toEqual(x);
        },
      ),
      { numRuns: 40 },
    );
  });

  // Random, mostly valid rings over a 64-address universe; we are peer 1.
  const U = { start: 0x0a000000, end: 0x0a000040 };
  const arbEntries = fc
    .array(
      fc.record({
        off: fc.nat(63),
        peer: fc.constantFrom(1, 2, 3),
        version: fc.nat(4),
        freePct: fc.nat(110),
      }),
      { maxLength: 8 },
    )
    .map((raw) => {
      const byOff = new Map(raw.map((x) => [x.off, x]));
      const sorted = [...byOff.values()].sort((a, b) => a.off - b.off);
      return sorted.map((x, k) => {
        const next = sorted[(k + 1) % sorted.length]!.off;
        const dist = next > x.off ? next - x.off : 64 - x.off + next;
        const pct = Math.min(x.freePct, 100);
        return {
          token: U.start + x.off,
          peer: x.peer,
          version: x.version,
          free: Math.floor((dist * pct) / 100) + (x.freePct > 105 ? 1 : 0),
        };
      });
    });
  const valid = (entries: RingEntry[]): RingEntry[] => {
    // Clamp to a valid ring for "ours".
    return entries.map((x, k) => {
      const next = entries[(k + 1) % entries.length]!.token;
      const dist = next > x.token ? next - x.token : U.end - x.token + (next - U.start);
      return { ...x, free: Math.min(x.free, dist) };
    });
  };
  const arbCase = fc.record({
    ours: arbEntries.map(valid),
    theirs: arbEntries,
    used: fc.uniqueArray(fc.nat(63), { maxLength: 6 }),
    seeds: fc.constantFrom<[PeerName[], PeerName[]]>(
      [[], []],
      [
        [1, 2],
        [1, 2],
      ],
      [[], [2]],
      [[1], [2]],
    ),
  });

  it("merge is idempotent, and a failed merge leaves the ring untouched", () => {
    fc.assert(
      fc.property(arbCase, ({ ours, theirs, used, seeds }) => {
        const ring = Ring.fromData({ ...U, peer: 1, entries: ours, seeds: seeds[0] }, 1);
        const mine = new Set(ring.ownedRanges().flatMap((x) => range(x)));
        const inUse = (x: Range): boolean =>
          used.some((o) => mine.has(U.start + o) && U.start + o >= x.start && U.start + o < x.end);
        const received: RingData = { ...U, peer: 2, entries: theirs, seeds: seeds[1] };
        const before = ring.toData();
        let ok = true;
        try {
          ring.merge(received, { inUse });
        } catch (err) {
          expect(err).toBeInstanceOf(RingError);
          expect(ring.toData()).toEqual(before);
          ok = false;
        }
        if (!ok) return;
        const once = ring.toData();
        expect(ring.merge(received, { inUse })).toBe(false);
        expect(ring.toData()).toEqual(once);
        expect(ring.merge(ring.toData(), { inUse })).toBe(false);
        expect(ring.toData()).toEqual(once);
      }),
      { numRuns: 2000 },
    );
  });

  it("merge changes a token we own only as 8.4.5 allows, and never takes an address in use", () => {
    fc.assert(
      fc.property(arbCase, ({ ours, theirs, used, seeds }) => {
        const ring = Ring.fromData({ ...U, peer: 1, entries: ours, seeds: seeds[0] }, 1);
        const mine = new Set(ring.ownedRanges().flatMap((x) => range(x)));
        const usedAddrs = used.map((o) => U.start + o).filter((a) => mine.has(a));
        const inUse = (x: Range): boolean => usedAddrs.some((a) => a >= x.start && a < x.end);
        let res;
        try {
          res = ring.mergeReport({ ...U, peer: 2, entries: theirs, seeds: seeds[1] }, { inUse });
        } catch {
          return;
        }
        const after = ring.entries();
        // Tokens are never removed; the result has exactly the union of tokens.
        const tokens = [...new Set([...ours, ...theirs].map((x) => x.token))].sort((a, b) => a - b);
        expect(after.map((x) => x.token)).toEqual(tokens);
        // No address in use lost.
        for (const a of usedAddrs) expect(ring.owner(a)).toBe(1);
        // The loss report matches the rings.
        const lost = subtractRanges(
          normalizeRanges([...mine].map((a) => ({ start: a, end: a + 1 }))),
          ring.ownedRanges(),
        );
        expect(res.lost).toEqual(lost);
        for (const o of ours) {
          const got = after.find((x) => x.token === o.token)!;
          const their = theirs.find((x) => x.token === o.token);
          if (o.peer !== 1) continue;
          if (got.peer === 1) {
            // Kept: same version, or re-versioned above a stale copy of our own token.
            if (got.version !== o.version) {
              expect(their !== undefined && their.peer === 1 && their.version > o.version).toBe(
                true,
              );
              expect(got.version).toBe(their!.version + 1);
            }
            expect(got.free).toBeLessThanOrEqual(o.free);
          } else {
            // Taken: theirs newer, or same version and more free (a conflict), never in use.
            expect(their).toBeDefined();
            expect(got).toEqual(their);
            expect(
              their!.version > o.version || (their!.version === o.version && their!.free > o.free),
            ).toBe(true);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});

/** Tokens, owners, versions and free counts of a ring, as one string. */
function fingerprint(ring: Ring): string {
  return ring
    .entries()
    .map((x) => `${x.token}/${x.peer}/${x.version}/${x.free}`)
    .join(",");
}

function range(x: Range): number[] {
  return Array.from({ length: x.end - x.start }, (_, k) => x.start + k);
}
