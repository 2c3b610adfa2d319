// Allocators joined by an in-memory mesh that carries the real encoded payloads: consensus,
// unique addresses, space requests, claims, rmpeer, and a restart from the database.
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Allocator, type IpallocInit } from "../../../src/ipam/allocator.js";
import { JsonFileStore } from "../../../src/ipam/store.js";
import { parseAddress, parseCidr } from "../../../src/ipam/address.js";
import { Logger } from "../../../src/util/log.js";
import type { GossipData } from "../../../src/mesh/gossip.js";

const log = new Logger("error");
const UNIVERSE = parseCidr("198.18.128.0/18");
const DEFAULT = { ...UNIVERSE, prefix: 18 };
const A = 0x7a0000000001;
const B = 0x7a0000000002;
const C = 0x7a0000000003;

class Net {
  readonly nodes = new Map<number, Allocator>();
  down = new Set<number>();
  private queue: (() => void)[] = [];
  private flushing = false;
  post(fn: () => void): void {
    this.queue.push(fn);
    if (!this.flushing) {
      this.flushing = true;
      queueMicrotask(() => {
        while (this.queue.length > 0) this.queue.shift()!();
        this.flushing = false;
      });
    }
  }
}

const live: Allocator[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const a of live.splice(0)) a.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function node(
  net: Net,
  name: number,
  init: IpallocInit,
  opts: { dir?: string; given?: number } = {},
): Allocator {
  const alloc: Allocator = new Allocator({
    us: name,
    uid: BigInt(name),
    nickname: `n${name & 0xf}`,
    universe: UNIVERSE,
    defaultSubnet: DEFAULT,
    init,
    log,
    random: () => 0.5,
    ...(opts.dir ? { store: new JsonFileStore(opts.dir, name) } : {}),
    transport: {
      broadcast: (data: GossipData) => {
        const [payload] = data.encode();
        for (const [other, peer] of net.nodes) {
          if (other === name || net.down.has(other) || net.down.has(name)) continue;
          net.post(() => peer.onBroadcast(name, payload!));
        }
      },
      unicast: (dst, payload) => {
        const peer = net.nodes.get(dst);
        if (!peer || net.down.has(dst) || net.down.has(name)) return false;
        net.post(() => peer.onUnicast(name, payload));
        return true;
      },
      knownPeer: (p) => net.nodes.has(p) && !net.down.has(p),
      givenPeers: () => opts.given ?? net.nodes.size - 1,
    },
  });
  net.nodes.set(name, alloc);
  live.push(alloc);
  return alloc;
}

const signal = (): AbortSignal => new AbortController().signal;
const ip = (cidr: string): number => parseAddress(cidr.split("/")[0]!);

describe("Allocator", () => {
  it("three electors reach consensus, split the range and hand out unique addresses", async () => {
    const net = new Net();
    const [a, b, c] = [A, B, C].map((n) => node(net, n, { mode: "consensus", count: 3 }));
    const got = await Promise.all(
      [a!, b!, c!].flatMap((x, i) =>
        [0, 1, 2, 3, 4].map((j) => x.allocate(`c${i}-${j}`, undefined, true, signal())),
      ),
    );
    expect(new Set(got).size).toBe(15);
    for (const cidr of got) {
      expect(cidr).toMatch(/\/18$/);
      const address = ip(cidr);
      expect(address).toBeGreaterThan(UNIVERSE.start);
      expect(address).toBeLessThan(UNIVERSE.end - 1);
    }
    expect(
      a!
        .status()
        .owners.map((o) => o.peer)
        .sort(),
    ).toHaveLength(3);
    // Idempotent per id.
    expect(await a!.allocate("c0-0", undefined, true, signal())).toBe(got[0]);
  });

  it("a peer with no share asks another for space and gets it (spec 8.5)", async () => {
    const net = new Net();
    const a = node(net, A, { mode: "seed", peers: [A] });
    const b = node(net, B, { mode: "seed", peers: [A] });
    const got = await b.allocate("x", undefined, false, signal());
    expect(b.status().ourShare).toBeGreaterThan(0);
    expect(a.status().ourShare + b.status().ourShare).toBe(2 ** 14);
    expect(b.counters.spaceRequestsSent).toBeGreaterThan(0);
    expect(await a.allocate("y", undefined, false, signal())).not.toBe(got);
  });

  it("claims: ours is taken, another peer's is asked for, a taken one refused", async () => {
    const net = new Net();
    const a = node(net, A, { mode: "seed", peers: [A, B] });
    const b = node(net, B, { mode: "seed", peers: [A, B] });
    const mine = UNIVERSE.start + 10; // A owns the lower half after the split
    await a.claim("c1", mine, 18, false, signal());
    expect(a.lookup("c1", undefined)).toEqual(["198.18.128.10/18"]);
    await expect(a.claim("c2", mine, 18, false, signal())).rejects.toThrow(/already owned by c1/);
    // B claims an address in A's half: A grants it.
    await b.claim("c3", UNIVERSE.start + 20, 18, false, signal());
    expect(b.lookup("c3", undefined)).toEqual(["198.18.128.20/18"]);
    // And one A uses: denied.
    await expect(b.claim("c4", mine, 18, false, signal())).rejects.toThrow(/owned by other peer/);
  });

  it("rmpeer takes a dead peer's ranges over", async () => {
    const net = new Net();
    const a = node(net, A, { mode: "seed", peers: [A, B] });
    node(net, B, { mode: "seed", peers: [A, B] });
    await new Promise((r) => setTimeout(r, 0)); // B's broadcast (with its nickname) arrives
    net.down.add(B);
    const before = a.status().ourShare;
    expect(a.rmpeer("n2")).toBe(`${2 ** 13} IPs taken over from n2\n`);
    expect(a.status().ourShare).toBe(before + 2 ** 13);
    expect(() => a.rmpeer("n1")).toThrow(/Cannot remove self/);
  });

  it("keeps its ring and addresses across a restart from its database", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-ipam-"));
    dirs.push(dir);
    const net = new Net();
    const a = node(net, A, { mode: "consensus", count: 1 }, { dir });
    const first = await a.allocate("keep", undefined, true, signal());
    a.stop();
    const net2 = new Net();
    const again = node(net2, A, { mode: "consensus", count: 1 }, { dir });
    expect(again.lookup("keep", undefined)).toEqual([first]);
    const next = await again.allocate("other", undefined, true, signal());
    expect(next).not.toBe(first);
    expect(again.status().state).toBe("ready");
  });

  it("refuses malformed gossip without changing its ring", async () => {
    const net = new Net();
    const a = node(net, A, { mode: "consensus", count: 1 });
    await a.allocate("x", undefined, false, signal());
    const before = JSON.stringify(a.status());
    expect(a.onBroadcast(B, Buffer.from("garbage"))).toBeUndefined();
    a.onUnicast(B, Buffer.alloc(0));
    a.onUnicast(B, Buffer.from([7, 1, 2]));
    expect(a.counters.rejectedMessages).toBe(3);
    expect(JSON.stringify(a.status())).toBe(before);
  });
});
