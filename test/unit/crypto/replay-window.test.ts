import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  REPLAY_WINDOW_SIZE,
  ReplayWindow,
  type ReplayVerdict,
} from "../../../src/crypto/replay-window.js";

const W = BigInt(REPLAY_WINDOW_SIZE);
const MAX_SEQ = 2n ** 63n - 1n;

/** The spec 3.3 table, written as plainly as possible (Sets, bigint), as a reference. */
class ModelWindow {
  current = 0n;
  cur = new Set<bigint>();
  prev = new Set<bigint>();
  accept(seq: bigint): ReplayVerdict {
    const window = seq / W;
    const offset = seq % W;
    const delta = window - this.current;
    if (delta < -1n) return "too-old";
    if (delta === 1n) {
      this.prev = this.cur;
      this.cur = new Set();
      this.current++;
    } else if (delta > 1n) {
      this.prev = new Set();
      this.cur = new Set();
      this.current = window;
    }
    const set = delta === -1n ? this.prev : this.cur;
    if (set.has(offset)) return "replayed";
    set.add(offset);
    return "ok";
  }
}

describe("replay window (V11)", () => {
  it("reproduces V11", () => {
    const steps: [bigint, boolean][] = [
      [0n, true],
      [1n, true],
      [2n, true],
      [1n, false],
      [W + 5n, true],
      [3n, true],
      [1n, false],
      [W + 5n, false],
      [3n * W, true],
      [W + 6n, false],
      [2n * W + 7n, true],
      [2n * W + 7n, false],
      [3n * W + 1n, true],
      [0n, false],
    ];
    const w = new ReplayWindow();
    for (const [seq, accepted] of steps) {
      expect([seq, w.checkSeq(seq) === "ok"]).toEqual([seq, accepted]);
      expect([seq, w.acceptSeq(seq) === "ok"]).toEqual([seq, accepted]);
    }
  });

  it("distinguishes replayed from too-old, and the hi/lo API matches the bigint one", () => {
    const w = new ReplayWindow();
    expect(w.accept(0, 0)).toBe("ok");
    expect(w.accept(0, 0)).toBe("replayed");
    expect(w.accept(0, 3 * REPLAY_WINDOW_SIZE)).toBe("ok");
    expect(w.accept(0, 1)).toBe("too-old");
    expect(w.accept(0, 2 * REPLAY_WINDOW_SIZE + 1)).toBe("ok"); // previous window, fresh
    expect(w.currentWindow).toBe(3);
  });

  it("handles the largest 63-bit numbers and huge jumps exactly", () => {
    const w = new ReplayWindow();
    expect(w.acceptSeq(5n)).toBe("ok");
    expect(w.acceptSeq(MAX_SEQ)).toBe("ok");
    expect(w.accept(0x7fff_ffff, 0xffff_ffff)).toBe("replayed");
    expect(w.acceptSeq(MAX_SEQ - W)).toBe("ok"); // previous window
    expect(w.acceptSeq(MAX_SEQ - 2n * W)).toBe("too-old");
    expect(w.acceptSeq(5n)).toBe("too-old");
    expect(w.currentWindow).toBe(Number(MAX_SEQ / W));
  });

  it("rejects out-of-range inputs (the DF bit must be stripped)", () => {
    const w = new ReplayWindow();
    expect(() => w.acceptSeq(2n ** 63n)).toThrow(RangeError);
    expect(() => w.acceptSeq(-1n)).toThrow(RangeError);
    expect(() => w.accept(0x8000_0000, 0)).toThrow(RangeError);
    expect(() => w.accept(0, 2 ** 32)).toThrow(RangeError);
    expect(() => w.check(0, -1)).toThrow(RangeError);
  });

  it("check never changes state", () => {
    const w = new ReplayWindow();
    expect(w.checkSeq(10n * W)).toBe("ok");
    expect(w.currentWindow).toBe(0);
    expect(w.acceptSeq(0n)).toBe("ok");
  });
});

/** Sequence numbers that exercise all table rows: clustered, sliding, jumping, and huge. */
const seqArb = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 4n * W }) },
  { weight: 3, arbitrary: fc.bigInt({ min: 0n, max: 40n }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: 3n }).map((k) => k * W + 1n) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: MAX_SEQ }) },
  { weight: 1, arbitrary: fc.bigInt({ min: MAX_SEQ - 3n * W, max: MAX_SEQ }) },
);

describe("replay window properties", () => {
  it("agrees with the plain model of the spec table", () => {
    fc.assert(
      fc.property(fc.array(seqArb, { maxLength: 200 }), (seqs) => {
        const w = new ReplayWindow();
        const m = new ModelWindow();
        for (const s of seqs) expect([s, w.acceptSeq(s)]).toEqual([s, m.accept(s)]);
      }),
      { numRuns: 150 },
    );
  });

  it("never accepts a duplicate, nor anything 2W or more behind the maximum", () => {
    fc.assert(
      fc.property(fc.array(seqArb, { maxLength: 200 }), (seqs) => {
        const w = new ReplayWindow();
        const accepted = new Set<bigint>();
        let max = -1n;
        for (const s of seqs) {
          const predicted = w.checkSeq(s);
          const verdict = w.acceptSeq(s);
          expect(verdict).toBe(predicted);
          if (verdict !== "ok") continue;
          expect(accepted.has(s)).toBe(false);
          expect(s > max - 2n * W).toBe(true);
          accepted.add(s);
          if (s > max) max = s;
        }
      }),
      { numRuns: 150 },
    );
  });

  it("accepts any permutation of a run that fits in the window", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: MAX_SEQ - 2n * W }),
        fc.uniqueArray(fc.integer({ min: 0, max: REPLAY_WINDOW_SIZE }), { maxLength: 100 }),
        (base, offsets) => {
          const w = new ReplayWindow();
          for (const o of offsets) expect(w.acceptSeq(base + BigInt(o))).toBe("ok");
          for (const o of offsets) expect(w.acceptSeq(base + BigInt(o))).toBe("replayed");
        },
      ),
      { numRuns: 50 },
    );
  });
});
