import { describe, expect, it } from "vitest";
import { TokenBucket } from "../../../src/mesh/accept-limiter.js";

const takeN = (b: TokenBucket, n: number, now: number): number => {
  let ok = 0;
  for (let i = 0; i < n; i++) if (b.take(now)) ok++;
  return ok;
};

describe("TokenBucket (accept limit)", () => {
  it("allows a burst of 20, then one per 50 ms", () => {
    const b = new TokenBucket(undefined, undefined, 0);
    expect(takeN(b, 20, 0)).toBe(20);
    expect(b.take(0)).toBe(false);
    expect(b.take(49)).toBe(false);
    expect(b.take(50)).toBe(true);
    expect(b.take(50)).toBe(false);
    expect(b.take(99)).toBe(false);
    expect(b.take(100)).toBe(true);
    expect(takeN(b, 5, 349)).toBe(4); // 100..349 holds 4 whole refills (150, 200, 250, 300)
    expect(b.take(350)).toBe(true);
  });

  it("keeps partial refill time across takes", () => {
    const b = new TokenBucket(20, 50, 0);
    takeN(b, 20, 0);
    expect(b.take(75)).toBe(true); // one token at 50; 25 ms carried
    expect(b.take(99)).toBe(false);
    expect(b.take(100)).toBe(true);
  });

  it("never holds more than 20 tokens after a long idle time", () => {
    const b = new TokenBucket(20, 50, 0);
    takeN(b, 20, 0);
    expect(takeN(b, 25, 1_000_000)).toBe(20);
    expect(b.take(1_000_049)).toBe(false);
    expect(b.take(1_000_050)).toBe(true);
  });

  it("sustains exactly 20 accepts per second", () => {
    const b = new TokenBucket(20, 50, 0);
    takeN(b, 20, 0);
    let ok = 0;
    for (let t = 1; t <= 1000; t++) ok += takeN(b, 3, t);
    expect(ok).toBe(20);
  });
});
