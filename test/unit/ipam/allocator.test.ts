// Allocators joined by an in-memory mesh that carries the real encoded payloads: consensus,
// unique addresses, space requests, claims, rmpeer, and a restart from the database.
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Allocator,
  DEAD_ENDPOINT_GRACE_MS,
  endpointAlive,
  type IpallocInit,
} from "../../../src/ipam/allocator.js";
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
  opts: {
    dir?: string;
    given?: number;
    now?: () => number;
    alive?: (id: string) => boolean;
  } = {},
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
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.alive ? { alive: opts.alive } : {}),
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

/** The promise's value, or a rejection if it takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: still waiting`)), ms),
    ),
  ]);
}

describe("Allocator prime (GET /ring)", () => {
  it("resolves when the ring comes into being inside the call itself (quorum 1)", async () => {
    const a = node(new Net(), A, { mode: "consensus", count: 1 });
    await within(a.prime(signal()), 1000, "prime");
    expect(a.status().state).toBe("ready");
  });

  it("resolves for an idle elector that already saw a quorum accept, and decides on starting", async () => {
    const net = new Net();
    const [a, b, c] = [A, B, C].map((n) => node(net, n, { mode: "consensus", count: 3 }));
    // A and B need the ring; C votes along while idle, so it knows the accepts before it starts.
    await Promise.all([a!.prime(signal()), b!.prime(signal())]);
    await new Promise((r) => setTimeout(r, 10));
    await within(c!.prime(signal()), 1000, "prime on the third peer");
    expect(c!.status().state).toBe("ready");
  });
});

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

  it("reset hands all our ranges to a live peer (spec 8.5.3)", async () => {
    const net = new Net();
    const a = node(net, A, { mode: "seed", peers: [A, B] });
    const b = node(net, B, { mode: "seed", peers: [A, B] });
    await new Promise((r) => setTimeout(r, 0));
    a.reset();
    await new Promise((r) => setTimeout(r, 0)); // A's broadcast arrives
    expect(a.status().ourShare).toBe(0);
    expect(a.status().ourFree).toBe(0);
    expect(b.status().ourShare).toBe(2 ** 14);
    expect(b.status().owners.map((o) => o.nickname)).toEqual(["n2"]);
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

describe("Allocator: endpoints that disappear (spec 8.7.3)", () => {
  /** One peer owning the whole range, a clock we move, and ids we declare gone. */
  function sweeper(): { a: Allocator; gone: Set<string>; at: (ms: number) => void } {
    let clock = 1_000_000;
    const gone = new Set<string>();
    const a = node(
      new Net(),
      A,
      { mode: "seed", peers: [A] },
      { now: () => clock, alive: (id) => !gone.has(id) },
    );
    return {
      a,
      gone,
      at: (ms) => {
        clock = 1_000_000 + ms;
        a.tick();
      },
    };
  }

  it("releases a tracked id that stays gone for the grace, not before", async () => {
    const { a, gone, at } = sweeper();
    const lost = await a.allocate("netns:/run/netns/x", undefined, true, signal());
    const kept = await a.allocate("netns:/run/netns/y", undefined, true, signal());
    const untracked = await a.allocate("weave:expose", undefined, false, signal());
    gone.add("netns:/run/netns/x");
    gone.add("weave:expose"); // not check-alive: never swept
    at(0); // found gone
    at(DEAD_ENDPOINT_GRACE_MS - 5000);
    expect(a.lookup("netns:/run/netns/x", undefined)).toEqual([lost]);
    at(DEAD_ENDPOINT_GRACE_MS);
    expect(a.lookup("netns:/run/netns/x", undefined)).toEqual([]);
    expect(a.owned().map((o) => o.containerid)).toEqual(["netns:/run/netns/y", "weave:expose"]);
    expect(a.lookup("netns:/run/netns/y", undefined)).toEqual([kept]);
    expect(a.lookup("weave:expose", undefined)).toEqual([untracked]);
    // The address is free again: the lowest free one is handed out next.
    expect(await a.allocate("next", undefined, true, signal())).toBe(lost);
    expect(a.status().allocations).toBe(3);
  });

  it("keeps the addresses of an endpoint that comes back within the grace", async () => {
    const { a, gone, at } = sweeper();
    const id = "netns:/proc/4242/ns/net";
    const got = await a.allocate(id, undefined, true, signal());
    gone.add(id);
    at(0);
    at(20_000);
    gone.delete(id); // back
    at(25_000);
    at(DEAD_ENDPOINT_GRACE_MS + 10_000);
    expect(a.lookup(id, undefined)).toEqual([got]);
    // Gone again later: the grace starts over from when it is next found gone.
    gone.add(id);
    at(60_000);
    at(60_000 + DEAD_ENDPOINT_GRACE_MS - 5000);
    expect(a.lookup(id, undefined)).toEqual([got]);
    at(60_000 + DEAD_ENDPOINT_GRACE_MS);
    expect(a.lookup(id, undefined)).toEqual([]);
  });

  it("an allocation for an id found gone clears the mark (spec 8.7.1)", async () => {
    const { a, gone, at } = sweeper();
    const id = "netns:/run/netns/z";
    const got = await a.allocate(id, undefined, true, signal());
    gone.add(id);
    at(0);
    expect(await a.allocate(id, undefined, true, signal())).toBe(got);
    gone.delete(id);
    at(10_000); // alive: stays unmarked
    gone.add(id);
    at(20_000); // marked again from here
    at(20_000 + DEAD_ENDPOINT_GRACE_MS - 1);
    expect(a.lookup(id, undefined)).toEqual([got]);
  });

  it("a claim outside the range takes an address from a holder that is gone", async () => {
    const { a, gone, at } = sweeper();
    const outside = parseAddress("10.9.9.9");
    // The API's claims carry no check-alive yet: the id is tracked through an allocation.
    await a.allocate("netns:/run/netns/old", undefined, true, signal());
    await a.claim("netns:/run/netns/old", outside, 24, false, signal());
    await expect(a.claim("other", outside, 24, false, signal())).rejects.toThrow(
      /already owned by netns:\/run\/netns\/old/,
    );
    gone.add("netns:/run/netns/old");
    at(0);
    await a.claim("other", outside, 24, false, signal());
    expect(a.lookup("other", parseSubnet("10.9.9.0/24"))).toEqual(["10.9.9.9/24"]);
    expect(a.lookup("netns:/run/netns/old", parseSubnet("10.9.9.0/24"))).toEqual([]);
  });

  it("by default checks the namespace file of netns: ids and takes other ids as alive", () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-ipam-"));
    dirs.push(dir);
    const file = join(dir, "ns");
    writeFileSync(file, "");
    expect(endpointAlive(`netns:${file}`)).toBe(true);
    expect(endpointAlive(`netns:${join(dir, "missing")}`)).toBe(false);
    expect(endpointAlive("0123456789ab")).toBe(true);
    expect(endpointAlive("weave:expose")).toBe(true);
  });

  it("releases a namespace whose file is removed, with the default check", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-ipam-"));
    dirs.push(dir);
    const file = join(dir, "ns");
    writeFileSync(file, "");
    let clock = 0;
    const a = node(new Net(), A, { mode: "seed", peers: [A] }, { now: () => clock });
    const id = `netns:${file}`;
    await a.allocate(id, undefined, true, signal());
    a.tick();
    rmSync(file);
    a.tick();
    clock = DEAD_ENDPOINT_GRACE_MS - 1;
    a.tick();
    expect(a.lookup(id, undefined)).toHaveLength(1);
    clock = DEAD_ENDPOINT_GRACE_MS;
    a.tick();
    expect(a.lookup(id, undefined)).toEqual([]);
  });
});

function parseSubnet(text: string): { start: number; end: number; prefix: number } {
  return { ...parseCidr(text), prefix: Number(text.split("/")[1]) };
}
