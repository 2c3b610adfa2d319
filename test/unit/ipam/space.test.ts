import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  Space,
  chooseDonation,
  intersectRanges,
  largestAlignedBlock,
  normalizeRanges,
  rangesSize,
  subtractRanges,
} from "../../../src/ipam/space.js";
import type { Range } from "../../../src/ipam/types.js";

/** "a.b.c.d" → uint32. */
const ip = (s: string): number => s.split(".").reduce((n, o) => n * 256 + Number(o), 0);
const r = (start: string, end: string): Range => ({ start: ip(start), end: ip(end) });

describe("V29 donor block choice (space.Donate)", () => {
  // A owns 198.18.128.0–159.255 in every case but the last.
  const owned = r("198.18.128.0", "198.18.160.0");

  it("128.1 in use, request 198.18.128.0/24 → [128.192, 129.0) size 64", () => {
    const s = new Space();
    s.addFree([owned]);
    expect(s.claim(ip("198.18.128.1"))).toBe(true);
    expect(s.chooseDonation(r("198.18.128.0", "198.18.129.0"))).toEqual(
      r("198.18.128.192", "198.18.129.0"),
    );
  });

  it("nothing in use, request the whole /18 → [144.0, 160.0) size 4096", () => {
    const s = new Space();
    s.addFree([owned]);
    expect(s.chooseDonation(r("198.18.128.0", "198.18.192.0"))).toEqual(
      r("198.18.144.0", "198.18.160.0"),
    );
  });

  it("claim-style request for the single free address 198.18.129.7 → that address", () => {
    const s = new Space();
    s.addFree([owned]);
    expect(s.chooseDonation(r("198.18.129.7", "198.18.129.8"))).toEqual(
      r("198.18.129.7", "198.18.129.8"),
    );
  });

  it("claim-style request for 198.18.128.1, in use → nothing (denial)", () => {
    const s = new Space();
    s.addFree([owned]);
    s.claim(ip("198.18.128.1"));
    expect(s.chooseDonation(r("198.18.128.1", "198.18.128.2"))).toBeUndefined();
  });

  it("3 free addresses 198.18.128.0–2, request /24 → [128.1, 128.2) size 1", () => {
    const s = new Space();
    s.addFree([r("198.18.128.0", "198.18.128.3")]);
    expect(s.chooseDonation(r("198.18.128.0", "198.18.129.0"))).toEqual(
      r("198.18.128.1", "198.18.128.2"),
    );
  });

  it("donate removes the block from the space", () => {
    const s = new Space();
    s.addFree([owned]);
    const block = s.donate(r("198.18.128.0", "198.18.192.0"));
    expect(block).toEqual(r("198.18.144.0", "198.18.160.0"));
    expect(s.ownedRanges()).toEqual([r("198.18.128.0", "198.18.144.0")]);
    expect(s.numFree()).toBe(4096);
  });
});

describe("space bookkeeping", () => {
  it("allocate takes the lowest free address in the range; free returns it", () => {
    const s = new Space();
    s.addFree([r("10.0.0.0", "10.0.0.8")]);
    expect(s.allocate(r("10.0.0.2", "10.0.0.8"))).toBe(ip("10.0.0.2"));
    expect(s.allocate(r("10.0.0.2", "10.0.0.8"))).toBe(ip("10.0.0.3"));
    expect(s.hasAllocationsIn(r("10.0.0.0", "10.0.0.2"))).toBe(false);
    expect(s.hasAllocationsIn(r("10.0.0.3", "10.0.0.4"))).toBe(true);
    expect(s.numFreeIn(r("10.0.0.0", "10.0.0.8"))).toBe(6);
    s.free(ip("10.0.0.2"));
    expect(s.isFree(ip("10.0.0.2"))).toBe(true);
    expect(() => s.free(ip("10.0.0.2"))).toThrow();
    expect(() => s.remove([r("10.0.0.0", "10.0.0.8")])).toThrow(/in use/);
    s.remove([r("10.0.0.4", "10.0.0.8")]);
    expect(s.ownedRanges()).toEqual([r("10.0.0.0", "10.0.0.4")]);
    expect(() => s.addFree([r("10.0.0.3", "10.0.0.5")])).toThrow(/overlaps/);
  });

  it("interval algebra agrees with a per-address model", () => {
    const ranges = fc.array(
      fc.tuple(fc.nat(63), fc.nat(63)).map(([a, b]) => ({ start: a, end: b })),
      { maxLength: 6 },
    );
    const set = (rs: Range[]): Set<number> => {
      const out = new Set<number>();
      for (const x of rs) for (let a = x.start; a < x.end; a++) out.add(a);
      return out;
    };
    fc.assert(
      fc.property(ranges, ranges, (a0, b0) => {
        const a = normalizeRanges(a0);
        const b = normalizeRanges(b0);
        const sa = set(a0);
        const sb = set(b0);
        expect(set(a)).toEqual(sa);
        expect([...set(subtractRanges(a, b))].sort()).toEqual(
          [...sa].filter((x) => !sb.has(x)).sort(),
        );
        expect([...set(intersectRanges(a, b))].sort()).toEqual(
          [...sa].filter((x) => sb.has(x)).sort(),
        );
        expect(rangesSize(a)).toBe(sa.size);
      }),
    );
  });

  it("the chosen block is aligned, free and inside the request", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(255), fc.nat(40)), { maxLength: 5 }),
        fc.nat(255),
        fc.integer({ min: 1, max: 256 }),
        (pieces, rs, rn) => {
          const free = normalizeRanges(pieces.map(([s, n]) => ({ start: s, end: s + n })));
          const request = { start: rs, end: rs + rn };
          const block = chooseDonation(free, request);
          const inside = intersectRanges(free, [request]);
          if (inside.length === 0) {
            expect(block).toBeUndefined();
            return;
          }
          expect(block).toBeDefined();
          const b = block!;
          expect(subtractRanges([b], inside)).toEqual([]);
          // Each interval's choice is an aligned power-of-two block inside it.
          for (const iv of inside) {
            const x = largestAlignedBlock(iv);
            const size = x.end - x.start;
            expect(size & (size - 1)).toBe(0);
            expect(x.start % size).toBe(0);
            expect(x.start >= iv.start && x.end <= iv.end).toBe(true);
          }
        },
      ),
    );
  });
});
