import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAC_MAX_AGE_MS, MAC_REFRESH_MS, MacTable } from "../../../src/switch/mac-table.js";
import type { LocalPort } from "../../../src/switch/port.js";
import { Counters } from "../../../src/util/counters.js";

const SELF = 0x0a0000000001;
const PEER = 0x0a0000000002;
const port = (name: string): LocalPort => ({
  name,
  network: undefined as never,
  enqueue: () => {},
  flush: () => {},
});
const macs = (t: MacTable): number[] => [...t.list()].map(([m]) => m);

describe("MacTable", () => {
  it("has Weave's timing: 10 min max age, 1 min refresh", () => {
    expect(MAC_MAX_AGE_MS).toBe(600_000);
    expect(MAC_REFRESH_MS).toBe(60_000);
  });

  it("learns local and remote bindings", () => {
    const t = new MacTable(8, new Counters());
    const p = port("p");
    t.learn(1, p, SELF, 0);
    t.learn(2, null, PEER, 0);
    expect(t.lookup(1, 0)).toEqual({ port: p, peer: SELF, seen: 0 });
    expect(t.lookup(2, 0)).toEqual({ port: null, peer: PEER, seen: 0 });
    expect(t.lookup(3, 0)).toBeUndefined();
    expect(t.size).toBe(2);
  });

  it("moves a MAC at once, and refreshes its timestamp at most once a minute", () => {
    const t = new MacTable(8, new Counters());
    const p = port("p");
    const q = port("q");
    t.learn(1, p, SELF, 0);
    t.learn(1, p, SELF, MAC_REFRESH_MS - 1);
    expect(t.lookup(1, MAC_REFRESH_MS - 1)?.seen).toBe(0);
    t.learn(1, p, SELF, MAC_REFRESH_MS);
    expect(t.lookup(1, MAC_REFRESH_MS)?.seen).toBe(MAC_REFRESH_MS);
    t.learn(1, q, SELF, MAC_REFRESH_MS + 1); // moved to another port: immediate
    expect(t.lookup(1, MAC_REFRESH_MS + 1)).toEqual({
      port: q,
      peer: SELF,
      seen: MAC_REFRESH_MS + 1,
    });
    t.learn(1, null, PEER, MAC_REFRESH_MS + 2); // moved to a peer
    expect(t.lookup(1, MAC_REFRESH_MS + 2)).toMatchObject({ port: null, peer: PEER });
    expect(t.size).toBe(1);
  });

  it("expires entries after 10 minutes on lookup", () => {
    const t = new MacTable(8, new Counters());
    t.learn(1, null, PEER, 1000);
    expect(t.lookup(1, 1000 + MAC_MAX_AGE_MS)).toBeDefined();
    expect(t.lookup(1, 1001 + MAC_MAX_AGE_MS)).toBeUndefined();
    expect(t.size).toBe(0);
  });

  it("an entry not refreshed within the refresh window still expires from its first sighting", () => {
    const t = new MacTable(8, new Counters());
    const p = port("p");
    t.learn(1, p, SELF, 0);
    t.learn(1, p, SELF, 30_000); // inside the refresh window: no update
    expect(t.lookup(1, MAC_MAX_AGE_MS + 1)).toBeUndefined();
  });

  it("sweep removes only expired entries", () => {
    const t = new MacTable(8, new Counters());
    t.learn(1, null, PEER, 0);
    t.learn(2, null, PEER, 5 * 60_000);
    t.learn(3, null, PEER, 9 * 60_000);
    t.sweep(MAC_MAX_AGE_MS);
    expect(macs(t)).toEqual([1, 2, 3]);
    t.sweep(MAC_MAX_AGE_MS + 1);
    expect(macs(t)).toEqual([2, 3]);
    t.sweep(15 * 60_000 + 1);
    expect(macs(t)).toEqual([3]);
  });

  it("sweep honours refreshed entries (they move to the young end)", () => {
    const t = new MacTable(8, new Counters());
    t.learn(1, null, PEER, 0);
    t.learn(2, null, PEER, 1000);
    t.learn(1, null, PEER, 2 * 60_000); // refresh 1
    t.sweep(MAC_MAX_AGE_MS + 1001);
    expect(macs(t)).toEqual([1]);
  });

  it("is bounded: evicts the oldest and counts mac_evictions", () => {
    const counters = new Counters();
    const t = new MacTable(4, counters);
    for (let m = 1; m <= 4; m++) t.learn(m, null, PEER, m);
    expect(counters.mac_evictions).toBe(0);
    t.learn(1, null, PEER, MAC_REFRESH_MS + 10); // refresh: 1 becomes the youngest
    t.learn(5, null, PEER, MAC_REFRESH_MS + 11);
    expect(macs(t)).toEqual([3, 4, 1, 5]);
    expect(counters.mac_evictions).toBe(1);
    t.learn(6, null, PEER, MAC_REFRESH_MS + 12);
    expect(macs(t)).toEqual([4, 1, 5, 6]);
    expect(counters.mac_evictions).toBe(2);
    expect(t.size).toBe(4);
  });

  it("stays bounded under a stream of random source MACs", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 32 }),
        fc.array(fc.integer({ min: 0, max: 2 ** 48 - 1 }), { maxLength: 400 }),
        fc.array(fc.integer({ min: 0, max: 63 }), { maxLength: 400 }),
        (cap, randomMacs, smallMacs) => {
          const counters = new Counters();
          const t = new MacTable(cap, counters);
          let inserts = 0;
          let now = 0;
          const stream = randomMacs.flatMap((m, i) =>
            smallMacs[i] === undefined ? [m] : [m, smallMacs[i]!],
          );
          for (const mac of stream) {
            now += 1000;
            const present = macs(t).includes(mac);
            t.learn(mac, null, PEER, now);
            if (!present) inserts++;
            expect(t.size).toBeLessThanOrEqual(cap);
            expect(t.lookup(mac, now)).toBeDefined(); // the newest is never the one evicted
          }
          expect(t.size + counters.mac_evictions).toBe(inserts);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("forgetPeer drops that peer's remote entries only", () => {
    const t = new MacTable(8, new Counters());
    const p = port("p");
    t.learn(1, null, PEER, 0);
    t.learn(2, null, PEER + 1, 0);
    t.learn(3, p, SELF, 0);
    t.learn(4, null, PEER, 0);
    t.forgetPeer(PEER);
    expect(macs(t)).toEqual([2, 3]);
    t.forgetPeer(SELF); // local entries are bound to ports, not forgotten with a peer
    expect(macs(t)).toEqual([2, 3]);
  });

  it("forgetPort drops that port's entries only", () => {
    const t = new MacTable(8, new Counters());
    const p = port("p");
    const q = port("q");
    t.learn(1, p, SELF, 0);
    t.learn(2, q, SELF, 0);
    t.learn(3, null, PEER, 0);
    t.learn(4, p, SELF, 0);
    t.forgetPort(p);
    expect(macs(t)).toEqual([2, 3]);
  });
});
