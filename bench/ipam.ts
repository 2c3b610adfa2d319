// IPAM benchmark: in-process `Allocator`s joined by a simulated gossip layer that carries the
// real encoded payloads inside real gossip envelopes, in virtual time. No root, no network.
//   tsc -p tsconfig.bench.json && node dist-bench/bench/ipam.js \
//     [--runs 3] [--peers 3,50] [--degree 4] [--latency 1] [--jitter 0] [--seed 1]
//     [--allocations 10000] [--db-allocations 200] [--samples 200] [--data-dir DIR]
//
// Measures, median (min–max) over runs:
// - allocation when the peer owns free space (no space request): wall time per allocation, in
//   memory and with the JSON database (`--data-dir`, fsync on every save, as the daemon does);
// - allocation when the peer owns nothing: one space request to the peer that owns the range,
//   from the request to the answer; network time (virtual) and processing time (wall);
// - consensus: time from the first allocation request to a ring on every peer, N electors
//   (`consensus=N`), on a full mesh and on a random connected graph; messages and bytes sent.
//
// The gossip layer is modelled as weft's (src/mesh/gossip.ts) with a consistent topology:
// broadcasts (tag 6) follow the broadcast routes of `Routes` over the graph, each relay passing
// on what `onBroadcast` returned (the relay's own state, as Weave's); unicasts (tag 5) are
// forwarded hop by hop along the unicast routes. Each hop takes `--latency` ms plus uniform
// jitter in [0, `--jitter`), FIFO per link direction; payloads are encoded when sent (nothing is
// queued or coalesced: no socket backpressure is modelled). Counted: every envelope sent on a
// link (a relayed message once per hop), bytes of gossip bodies without TCP framing. The
// allocators' timers (5 s consensus re-proposal, 5 s retry) run on the same virtual clock.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subnet } from "../src/api/ipam-api.js";
import { parseCidr } from "../src/ipam/address.js";
import { Allocator, IPAM_CHANNEL, type IpallocInit } from "../src/ipam/allocator.js";
import type { IntervalScheduler } from "../src/ipam/consensus.js";
import { JsonFileStore } from "../src/ipam/store.js";
import type { GossipData } from "../src/mesh/gossip.js";
import { Routes } from "../src/mesh/routes.js";
import { Logger } from "../src/util/log.js";
import {
  decodeBroadcast,
  decodeUnicast,
  encodeBroadcast,
  encodeUnicast,
} from "../src/wire/gossip-envelope.js";
import type { PeerName } from "../src/wire/peer-name.js";
import {
  VirtualClock,
  randomConnectedEdges,
  seededRandom,
  type Edge,
} from "../test/sim/mesh-sim.js";
import { fmtSpread, spread, table } from "./format.js";

const USAGE = `usage: node dist-bench/bench/ipam.js [--runs 3] [--peers 3,50] [--degree 4] [--latency MS] [--jitter MS] [--seed 1] [--allocations 10000] [--db-allocations 200] [--samples 200] [--data-dir DIR]`;

/** Weave's default `--ipalloc-range`, also the default subnet. */
const RANGE = "10.32.0.0/12";
const UNIVERSE = parseCidr(RANGE);
const SUBNET: Subnet = { ...UNIVERSE, prefix: 12 };
/** Virtual time 0 on the wall clock the allocators see (their gossip carries it in seconds). */
const EPOCH_MS = Date.UTC(2026, 0, 1);
/** Give up on consensus after this much virtual time. */
const CONSENSUS_DEADLINE_MS = 300_000;
const quiet = new Logger("error");
const signal = (): AbortSignal => new AbortController().signal;

type Entry = ReturnType<VirtualClock["schedule"]>;

interface SimOptions {
  seed: number;
  latencyMs: number;
  jitterMs: number;
  /** Edges between node indices; undefined = full mesh. */
  edges: Edge[] | undefined;
  n: number;
  init: (index: number, names: PeerName[]) => IpallocInit;
  dataDir?: string;
}

/** N allocators on a virtual clock, joined by the modelled gossip layer. */
class IpamSim {
  readonly clock = new VirtualClock();
  readonly names: PeerName[];
  readonly allocators: Allocator[] = [];
  messages = 0;
  bytes = 0;
  private readonly index = new Map<PeerName, number>();
  private readonly routes: Routes[];
  private readonly random: () => number;
  /** Last delivery time per link direction (FIFO). */
  private readonly lastDelivery = new Map<number, number>();

  constructor(private readonly opts: SimOptions) {
    this.random = seededRandom(opts.seed);
    const names = new Set<PeerName>();
    while (names.size < opts.n) names.add(1 + Math.floor(this.random() * (2 ** 48 - 2)));
    this.names = [...names];
    this.names.forEach((name, i) => this.index.set(name, i));
    const adjacency: PeerName[][] = this.names.map(() => []);
    const edges =
      opts.edges ??
      this.names.flatMap((_, a) => this.names.slice(a + 1).map((_, k): Edge => [a, a + 1 + k]));
    for (const [a, b] of edges) {
      adjacency[a]!.push(this.names[b]!);
      adjacency[b]!.push(this.names[a]!);
    }
    const view = { neighbours: (peer: PeerName) => adjacency[this.index.get(peer)!] ?? [] };
    this.routes = this.names.map((name) => {
      const r = new Routes(name);
      r.recompute(view);
      return r;
    });
    const scheduler: IntervalScheduler = {
      setInterval: (fn, ms) => this.clock.schedule(ms, fn, ms),
      clearInterval: (handle) => this.clock.cancel(handle as Entry),
    };
    // The allocator's own retry timer uses the global setInterval: the clock's while installed.
    this.clock.installed(() => {
      for (let i = 0; i < opts.n; i++) {
        this.clock.context = i;
        this.allocators.push(
          new Allocator({
            us: this.names[i]!,
            uid: BigInt(Math.floor(this.random() * 2 ** 53)) + 1n,
            nickname: `p${i}`,
            universe: UNIVERSE,
            defaultSubnet: SUBNET,
            init: opts.init(i, this.names),
            log: quiet,
            now: () => EPOCH_MS + this.clock.now,
            random: this.random,
            scheduler,
            ...(opts.dataDir ? { store: new JsonFileStore(opts.dataDir, this.names[i]!) } : {}),
            transport: {
              broadcast: (data) => this.relayBroadcast(i, i, data),
              unicast: (dst, payload) => this.unicast(i, dst, payload),
              knownPeer: (peer) => this.index.has(peer),
              givenPeers: () => opts.n - 1,
            },
          }),
        );
      }
      this.clock.context = undefined;
    });
  }

  /** Runs `fn` (a call into an allocator) with the virtual timers installed. */
  call<T>(at: number, fn: () => T): T {
    return this.clock.installed(() => {
      this.clock.context = at;
      try {
        return fn();
      } finally {
        this.clock.context = undefined;
      }
    });
  }

  stop(): void {
    this.clock.installed(() => {
      for (const a of this.allocators) a.stop();
    });
  }

  /** One hop from `from` to `to`: `deliver` runs there after the link's latency. */
  private send(from: number, to: number, body: Uint8Array, deliver: () => void): void {
    this.messages++;
    this.bytes += body.length;
    const link = from * this.opts.n + to;
    const at = Math.max(
      this.clock.now + this.opts.latencyMs + this.random() * this.opts.jitterMs,
      this.lastDelivery.get(link) ?? 0,
    );
    this.lastDelivery.set(link, at);
    const outer = this.clock.context;
    this.clock.context = to;
    this.clock.schedule(at - this.clock.now, deliver);
    this.clock.context = outer;
  }

  /** Tag 6: `at` passes `data` (from the flood of `source`) on along `source`'s route. */
  private relayBroadcast(at: number, source: number, data: GossipData): void {
    const src = this.names[source]!;
    for (const hop of this.routes[at]!.broadcastNextHops(src)) {
      const to = this.index.get(hop)!;
      for (const payload of data.encode()) {
        const body = encodeBroadcast({ channel: IPAM_CHANNEL, src, payload });
        this.send(at, to, body, () => {
          const env = decodeBroadcast(body);
          if (env.src === this.names[to]) return;
          const update = this.allocators[to]!.onBroadcast(env.src, env.payload);
          if (update) this.relayBroadcast(to, source, update);
        });
      }
    }
  }

  /** Tag 5 from `from`; false without a route, as the mesh's. */
  private unicast(from: number, dst: PeerName, payload: Uint8Array): boolean {
    if (this.routes[from]!.unicastNextHop(dst) === undefined) return false;
    const body = encodeUnicast({ channel: IPAM_CHANNEL, src: this.names[from]!, dst, payload });
    this.forward(from, body);
    return true;
  }

  private forward(at: number, body: Uint8Array): void {
    const { dst } = decodeUnicast(body);
    const hop = this.routes[at]!.unicastNextHop(dst);
    if (hop === undefined) return;
    const to = this.index.get(hop)!;
    this.send(at, to, body, () => {
      const env = decodeUnicast(body);
      if (env.dst === this.names[to]) this.allocators[to]!.onUnicast(env.src, env.payload);
      else this.forward(to, body);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Options {
  latencyMs: number;
  jitterMs: number;
  allocations: number;
  dbAllocations: number;
  samples: number;
  dataDir: string;
}

function withDir<T>(parent: string, fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(parent, "weft-ipam-bench-"));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** µs per allocation on a peer that owns the whole range (after consensus=1). */
function localAllocation(seed: number, count: number, o: Options, dir?: string): number {
  const sim = new IpamSim({
    seed,
    latencyMs: o.latencyMs,
    jitterMs: o.jitterMs,
    edges: undefined,
    n: 1,
    init: () => ({ mode: "consensus", count: 1 }),
    ...(dir ? { dataDir: dir } : {}),
  });
  try {
    const a = sim.allocators[0]!;
    sim.call(0, () => void a.allocate("warm-up", undefined, false, signal()));
    if (a.lookup("warm-up", undefined).length !== 1) throw new Error("no ring with consensus=1");
    const start = performance.now();
    sim.call(0, () => {
      for (let i = 0; i < count; i++) void a.allocate(`c${i}`, undefined, false, signal());
    });
    const wallMs = performance.now() - start;
    if (a.status().allocations !== count + 1) throw new Error("an allocation did not complete");
    return (wallMs * 1000) / count;
  } finally {
    sim.stop();
  }
}

interface SpaceRequestResult {
  virtualMs: number;
  wallUs: number;
  messages: number;
  bytes: number;
}

/**
 * Means over `samples` fresh pairs: A owns the whole range (seed ring), B owns nothing and
 * allocates; from B's request to B's answer.
 */
function spaceRequest(seed: number, o: Options, dir?: string): SpaceRequestResult {
  let virtualMs = 0;
  let wallUs = 0;
  let messages = 0;
  let bytes = 0;
  for (let s = 0; s < o.samples; s++) {
    const sim = new IpamSim({
      seed: seed * 100_003 + s,
      latencyMs: o.latencyMs,
      jitterMs: o.jitterMs,
      edges: [[0, 1]],
      n: 2,
      init: (_, names) => ({ mode: "seed", peers: [names[0]!] }),
      ...(dir ? { dataDir: dir } : {}),
    });
    try {
      // Both seed rings are broadcast at start: let that settle, then count from the request.
      sim.clock.runUntil(100);
      sim.messages = 0;
      sim.bytes = 0;
      const b = sim.allocators[1]!;
      const answered = (): boolean => b.lookup("x", undefined).length > 0;
      const t0 = sim.clock.now;
      const start = performance.now();
      sim.call(1, () => void b.allocate("x", undefined, false, signal()));
      const done = sim.clock.runUntil(60_000, answered);
      const wall = performance.now() - start;
      if (!done || b.counters.spaceRequestsSent !== 1) throw new Error("space request failed");
      virtualMs += sim.clock.now - t0;
      wallUs += wall * 1000;
      messages += sim.messages;
      bytes += sim.bytes;
    } finally {
      sim.stop();
    }
  }
  const n = o.samples;
  return { virtualMs: virtualMs / n, wallUs: wallUs / n, messages: messages / n, bytes: bytes / n };
}

interface ConsensusResult {
  links: number;
  /** Virtual ms until every peer has a ring (undefined: not within the deadline). */
  ringMs: number | undefined;
  /** Virtual ms until the first request is answered. */
  firstMs: number | undefined;
  messages: number;
  bytes: number;
  wallMs: number;
}

function consensus(
  n: number,
  topology: "full" | "random",
  degree: number,
  first: "one" | "all",
  seed: number,
  o: Options,
): ConsensusResult {
  const edges =
    topology === "full" ? undefined : randomConnectedEdges(n, degree, seededRandom(seed ^ 0x5eed));
  const sim = new IpamSim({
    seed,
    latencyMs: o.latencyMs,
    jitterMs: o.jitterMs,
    edges,
    n,
    init: () => ({ mode: "consensus", count: n }),
  });
  try {
    const ready = new Array<boolean>(n).fill(false);
    let readyCount = 0;
    let firstMs: number | undefined;
    const askers = first === "one" ? [0] : Array.from({ length: n }, (_, i) => i);
    const check = (i: number): void => {
      if (!ready[i] && sim.allocators[i]!.status().state === "ready") {
        ready[i] = true;
        readyCount++;
      }
      if (firstMs === undefined && sim.allocators[0]!.lookup("c0", undefined).length > 0) {
        firstMs = sim.clock.now;
      }
    };
    sim.clock.afterEvent = (context) => {
      if (typeof context === "number") check(context);
    };
    const start = performance.now();
    for (const i of askers) {
      sim.call(i, () => void sim.allocators[i]!.allocate(`c${i}`, undefined, false, signal()));
      check(i);
    }
    if (readyCount < n) sim.clock.runUntil(CONSENSUS_DEADLINE_MS, () => readyCount === n);
    const wallMs = performance.now() - start;
    return {
      links: edges?.length ?? (n * (n - 1)) / 2,
      ringMs: readyCount === n ? sim.clock.now : undefined,
      firstMs,
      messages: sim.messages,
      bytes: sim.bytes,
      wallMs,
    };
  } finally {
    sim.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Main

function number(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`--${name} must be a non-negative number: ${v}`);
  return n;
}

function integer(name: string, v: string | undefined, dflt: number, min = 1): number {
  const n = number(name, v, dflt);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: an integer ≥ ${min}`);
  return n;
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${(bytes / 1024 / 1024).toFixed(1)} MB`
    : bytes >= 1024
      ? `${(bytes / 1024).toFixed(1)} KB`
      : `${Math.round(bytes)} B`;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      runs: { type: "string" },
      peers: { type: "string" },
      degree: { type: "string" },
      latency: { type: "string" },
      jitter: { type: "string" },
      seed: { type: "string" },
      allocations: { type: "string" },
      "db-allocations": { type: "string" },
      samples: { type: "string" },
      "data-dir": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const runs = integer("runs", values.runs, 3);
  const counts = (values.peers ?? "3,50").split(",").map((x) => integer("peers", x, 0, 2));
  const degree = number("degree", values.degree, 4);
  const seed = integer("seed", values.seed, 1, 0);
  const o: Options = {
    latencyMs: number("latency", values.latency, 1),
    jitterMs: number("jitter", values.jitter, 0),
    allocations: integer("allocations", values.allocations, 10_000),
    dbAllocations: integer("db-allocations", values["db-allocations"], 200),
    samples: integer("samples", values.samples, 200),
    dataDir: values["data-dir"] ?? tmpdir(),
  };
  const seeds = Array.from({ length: runs }, (_, i) => seed + i);
  const col = <R>(rows: R[], f: (r: R) => number | undefined, decimals = 0): string =>
    fmtSpread(spread(rows.map(f)), decimals);

  // Warm-up (JIT), not counted.
  localAllocation(0, 10_000, o);
  spaceRequest(0, { ...o, samples: 500 });
  consensus(Math.min(10, Math.max(...counts)), "full", degree, "one", 0, o);

  const local = seeds.map((s) => localAllocation(s, o.allocations, o));
  const localDb = seeds.map((s) =>
    withDir(o.dataDir, (d) => localAllocation(s, o.dbAllocations, o, d)),
  );
  const remote = seeds.map((s) => spaceRequest(s, o));
  const remoteDb = seeds.map((s) =>
    withDir(o.dataDir, (d) => spaceRequest(s, { ...o, samples: Math.min(o.samples, 20) }, d)),
  );
  const dbSamples = Math.min(o.samples, 20);

  console.log(
    table(
      ["allocation", "per run", "network, virtual ms", "processing, wall µs", "messages", "bytes"],
      [
        [
          "owns free space, in memory",
          `${o.allocations} allocations`,
          "0",
          col(local, (r) => r, 1),
          "0",
          "0",
        ],
        [
          "owns free space, JSON database",
          `${o.dbAllocations} allocations`,
          "0",
          col(localDb, (r) => r, 0),
          "0",
          "0",
        ],
        [
          "space request, in memory",
          `${o.samples} fresh pairs`,
          col(remote, (r) => r.virtualMs, 1),
          col(remote, (r) => r.wallUs, 0),
          col(remote, (r) => r.messages, 1),
          col(remote, (r) => r.bytes, 0),
        ],
        [
          "space request, JSON database",
          `${dbSamples} fresh pairs`,
          col(remoteDb, (r) => r.virtualMs, 1),
          col(remoteDb, (r) => r.wallUs, 0),
          col(remoteDb, (r) => r.messages, 1),
          col(remoteDb, (r) => r.bytes, 0),
        ],
      ],
    ),
  );
  console.log();

  const rows: string[][] = [];
  for (const n of counts) {
    const topologies: ("full" | "random")[] = n <= degree + 1 ? ["full"] : ["full", "random"];
    for (const topology of topologies) {
      for (const first of ["one", "all"] as const) {
        const r = seeds.map((s) => consensus(n, topology, degree, first, s, o));
        const failed = r.filter((x) => x.ringMs === undefined).length;
        rows.push([
          String(n),
          topology === "full" ? "full mesh" : `random, degree ${degree}`,
          col(r, (x) => x.links),
          first === "one" ? "1 peer" : "every peer",
          col(r, (x) => x.firstMs, 1),
          col(r, (x) => x.ringMs, 1) + (failed > 0 ? ` (${failed} failed)` : ""),
          col(r, (x) => x.messages),
          r.length === 0 ? "–" : kib(spread(r.map((x) => x.bytes))!.median),
          col(r, (x) => x.wallMs, 1),
          col(r, (x) => x.wallMs / n, 1),
        ]);
      }
    }
  }
  console.log(
    table(
      [
        "peers",
        "topology",
        "links",
        "first request on",
        "first answer, virtual ms",
        "ring on every peer, virtual ms",
        "messages",
        "bytes",
        "CPU, all peers, wall ms",
        "CPU per peer, ms",
      ],
      rows,
    ),
  );
  console.log(`
Range ${RANGE} (default subnet the same). ${runs} run(s), seeds ${seed}..${seed + runs - 1};
median (min–max) over runs. One-way latency ${o.latencyMs} ms + [0, ${o.jitterMs}) ms per hop,
FIFO per link; virtual time, so network times are latency × hops, and processing is measured
separately as wall time (single thread, all peers; JIT warmed up by an uncounted first pass).
Allocation: "owns free space" is the mean over ${o.allocations} (in memory) or ${o.dbAllocations}
(JSON database in ${o.dataDir}, written and fsynced on every allocation as the daemon does)
consecutive allocations on a peer owning the whole range; "space request" is the mean over
fresh pairs where the asker owns nothing and the owner donates (request, ring update and
the donor's broadcast). Consensus: N electors with consensus=N; the first allocation request
on one peer (or on every peer at once) starts it; "first answer" is when peer 0's request is
answered, "ring on every peer" when the last peer has a ring; CPU per peer is the wall time
of simulating all peers divided by N (real peers work in parallel). Messages and bytes: every
gossip envelope sent on a link until then (a relayed broadcast counted once per hop), bodies
only.`);
}

main();
