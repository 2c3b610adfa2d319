import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ConnectionMaker,
  INITIAL_INTERVAL_MS,
  MAX_INTERVAL_MS,
  type Target,
} from "../../../src/mesh/connection-maker.js";

let dials: string[];
let rand: number;
let maker: ConnectionMaker;
let satisfied: (t: Target) => boolean;

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
  dials = [];
  rand = 0;
  satisfied = () => false;
  maker = new ConnectionMaker({
    dial: (t) => dials.push(t.address),
    satisfiedByExisting: (t) => satisfied(t),
    random: () => rand,
  });
});

afterEach(() => {
  maker.stop();
  vi.useRealTimers();
});

/**
 * Fails the target once and returns the retry delay it chose, checking that the dial happens
 * then and not earlier (timers fire on whole milliseconds, so within 1 ms of it).
 */
function failAndMeasure(target: Target): number {
  const before = dials.length;
  maker.ended(target, "connection refused", 0);
  const delay = target.retryAt! - Date.now();
  vi.advanceTimersByTime(Math.floor(delay) - 1);
  expect(dials).toHaveLength(before);
  vi.advanceTimersByTime(2);
  expect(dials).toHaveLength(before + 1);
  return delay;
}

describe("ConnectionMaker", () => {
  it("dials a new target at once, and only once per address", () => {
    const t = maker.add("198.18.0.2", 6783);
    expect(t.address).toBe("198.18.0.2:6783");
    expect(t.state).toBe("connecting");
    expect(dials).toEqual(["198.18.0.2:6783"]);
    expect(maker.add("198.18.0.2", 6783)).toBe(t);
    expect(dials).toHaveLength(1);
    expect(maker.list()).toEqual([t]);
  });

  it("retries after a delay drawn from [i/2, 3i/2), starting at i = 2 s", () => {
    const t = maker.add("h", 1);
    rand = 0;
    maker.ended(t, "refused", 0);
    expect(t.state).toBe("retrying");
    expect(t.lastError).toBe("refused");
    expect(t.retryAt).toBe(Date.now() + 1000);
    vi.advanceTimersByTime(999);
    expect(dials).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(dials).toHaveLength(2);
    expect(t.state).toBe("connecting");
    expect(t.retryAt).toBeUndefined();
  });

  it("the upper end of the draw stays below 3i/2", () => {
    const t = maker.add("h", 1);
    rand = 0.999999;
    const delay = failAndMeasure(t);
    expect(delay).toBeGreaterThanOrEqual(2999);
    expect(delay).toBeLessThan(3000);
  });

  it("grows the interval x1.5 per failure up to 6 minutes", () => {
    const t = maker.add("h", 1);
    rand = 0; // delay = i/2
    const delays: number[] = [];
    for (let n = 0; n < 14; n++) delays.push(failAndMeasure(t));
    let i = INITIAL_INTERVAL_MS;
    const expected: number[] = [];
    for (let n = 0; n < 14; n++) {
      expected.push(i / 2);
      i = Math.min(i * 1.5, MAX_INTERVAL_MS);
    }
    expect(expected.slice(0, 5)).toEqual([1000, 1500, 2250, 3375, 5062.5]);
    expect(delays).toEqual(expected);
    expect(delays.at(-1)).toBe(MAX_INTERVAL_MS / 2);
    expect(t.interval).toBe(MAX_INTERVAL_MS);
    rand = 0.5; // middle of the range: i
    expect(failAndMeasure(t)).toBe(MAX_INTERVAL_MS);
  });

  it("retries at once with the interval reset after a connection that lived over a minute", () => {
    const t = maker.add("h", 1);
    for (let n = 0; n < 5; n++) failAndMeasure(t);
    expect(t.interval).toBeGreaterThan(INITIAL_INTERVAL_MS);
    maker.connected(t);
    expect(t.state).toBe("connected");
    expect(t.lastError).toBeUndefined();
    const before = dials.length;
    maker.ended(t, "peer closed", 60_001);
    expect(dials).toHaveLength(before + 1);
    expect(t.state).toBe("connecting");
    expect(t.interval).toBe(INITIAL_INTERVAL_MS);
    rand = 0;
    expect(failAndMeasure(t)).toBe(1000);
  });

  it("a connection that lived exactly a minute backs off as usual", () => {
    const t = maker.add("h", 1);
    rand = 0;
    failAndMeasure(t);
    failAndMeasure(t); // i is now 4.5 s
    const before = dials.length;
    maker.ended(t, "closed", 60_000);
    expect(dials).toHaveLength(before);
    expect(t.state).toBe("retrying");
    vi.advanceTimersByTime(2250);
    expect(dials).toHaveLength(before + 1);
  });

  it("does not retry when retry=false", () => {
    const t = maker.add("h", 1);
    maker.ended(t, "cannot connect to ourself", 0, false);
    expect(t.state).toBe("failed");
    expect(t.lastError).toBe("cannot connect to ourself");
    expect(t.retryAt).toBeUndefined();
    vi.advanceTimersByTime(MAX_INTERVAL_MS * 3);
    expect(dials).toHaveLength(1);
  });

  it("stop cancels pending retries and ignores later ends", () => {
    const t = maker.add("h", 1);
    maker.ended(t, "refused", 0);
    maker.stop();
    vi.advanceTimersByTime(MAX_INTERVAL_MS * 3);
    maker.ended(t, "refused", 120_000);
    expect(dials).toHaveLength(1);
    maker.add("other", 2); // no dialling once stopped
    expect(dials).toHaveLength(1);
  });

  it("an end while a retry is pending replaces the pending retry", () => {
    const t = maker.add("h", 1);
    rand = 0;
    maker.ended(t, "a", 0); // retry in 1 s
    maker.ended(t, "b", 0); // retry in 1.5 s
    vi.advanceTimersByTime(MAX_INTERVAL_MS);
    expect(dials).toHaveLength(2);
  });

  it("does not dial a target whose peer is already connected, and marks it connected", () => {
    satisfied = (t) => t.port === 2;
    const t = maker.add("h", 2);
    expect(dials).toEqual([]);
    expect(t.state).toBe("connected");
    const u = maker.add("h", 1);
    expect(dials).toEqual(["h:1"]);
    // a retry that finds the peer connected by then does not dial either
    rand = 0;
    maker.ended(u, "refused", 0);
    satisfied = () => true;
    vi.advanceTimersByTime(1000);
    expect(dials).toEqual(["h:1"]);
    expect(u.state).toBe("connected");
    expect(u.lastError).toBeUndefined();
    expect(u.peer).toBeUndefined();
  });
});
