/**
 * An in-process mesh simulator: N `Mesh` instances joined by a simulated transport, in virtual
 * time. No root, no sockets, no vitest (the bench uses it too).
 *
 * Time. The simulator owns a `VirtualClock` (a discrete-event scheduler). While a simulator
 * method runs, the global `setTimeout`/`clearTimeout`/`setInterval`/`clearInterval` are replaced
 * by the clock's (and restored on return), so `Mesh`'s own debounces (1 s topology gossip,
 * 100 ms routes, 5 s GC, 30 s periodic gossip) run unchanged, on virtual time. Everything in
 * the mesh is synchronous, so no foreign code runs while the globals are replaced. Message
 * deliveries are events on the same clock. `Date.now` is left alone (the topology channel does
 * not read it). Results are reproducible for a seed, except that `Peers` picks a replacement
 * short id after a collision with `crypto.randomInt` (not injectable through `Mesh`).
 *
 * Transport. `send()` copies the body and delivers it to the destination's `mesh.handle()` after
 * `latencyMs` + uniform jitter in [0, `jitterMs`), FIFO per link direction (as TCP). Messages in
 * flight on a link that is closed are dropped. `backedUp()` is always false (no socket buffer is
 * modelled). A connection (`connect`) calls `connectionAdded` on both ends at once (the dialler
 * reports `ip:6783`, the acceptor the dialler's ip and an ephemeral port), and
 * `connectionEstablished` on both ends `establishDelayMs` later. Byte counts are gossip bodies
 * (tags 4/5/6) without TCP framing or encryption overhead.
 *
 * Convergence: every live mesh peer's table holds exactly the live mesh peers, each at the UID
 * and version that peer currently has; every link is established; the data topology view each
 * peer last handed to `dataTopologyChanged` has exactly the live links; and `Routes` over it
 * reaches every other peer. No external (e.g. hostile) node may be alive.
 *
 * Memory (`memoryPerPeer`): heapUsed growth over a baseline taken before the peers existed,
 * after forced GCs (`global.gc`, or the same function enabled at run time through
 * `v8.setFlagsFromString`), divided by the peer count; without GC, an estimate from table sizes.
 * The result says which. Take the baseline in a fresh process: V8 sometimes keeps a previous
 * simulator alive past the next baseline.
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Mesh } from "../../src/mesh/mesh.js";
import { Routes, type TopologyView } from "../../src/mesh/routes.js";
import { Counters } from "../../src/util/counters.js";
import { Logger } from "../../src/util/log.js";
import { formatPeerName, type PeerName } from "../../src/wire/peer-name.js";
import type { ConnectionSummary } from "../../src/wire/topology.js";

// ---------------------------------------------------------------------------------------------
// Randomness

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomInt(random: () => number, bound: number): number {
  return Math.min(Math.floor(random() * bound), bound - 1);
}

// ---------------------------------------------------------------------------------------------
// Virtual clock

interface ClockEntry {
  at: number;
  seq: number;
  fn: () => void;
  context: unknown;
  /** Period for setInterval entries. */
  interval: number | undefined;
  cancelled: boolean;
  /** In the heap (a fired timeout is not; clearing it then costs nothing). */
  queued: boolean;
}

/** What the patched setTimeout returns: enough of Node's Timeout for the mesh code. */
class VirtualTimer {
  constructor(public entry: ClockEntry) {}
  unref(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  hasRef(): boolean {
    return false;
  }
  [Symbol.toPrimitive](): number {
    return this.entry.seq;
  }
}

interface SavedTimers {
  setTimeout: typeof globalThis.setTimeout;
  clearTimeout: typeof globalThis.clearTimeout;
  setInterval: typeof globalThis.setInterval;
  clearInterval: typeof globalThis.clearInterval;
}

/**
 * A discrete-event scheduler: events run in (time, insertion) order. `install()` makes the
 * global timer functions schedule on it; `context` is whatever was current when an event was
 * scheduled, restored while it runs (the simulator uses it to know which peer an event is for).
 */
export class VirtualClock {
  now = 0;
  /** Set by the owner around calls into a peer; captured by every event scheduled meanwhile. */
  context: unknown = undefined;
  /** Called after each event with its context. */
  afterEvent: ((context: unknown) => void) | undefined;
  private heap: ClockEntry[] = [];
  /** Cancelled entries still in the heap (dropped when popped, or by `compact`). */
  private cancelled = 0;
  private seq = 0;
  private depth = 0;
  private saved: SavedTimers | undefined;

  schedule(delayMs: number, fn: () => void, interval?: number): ClockEntry {
    const entry: ClockEntry = {
      at: this.now + Math.max(0, delayMs),
      seq: this.seq++,
      fn,
      context: this.context,
      interval,
      cancelled: false,
      queued: false,
    };
    this.push(entry);
    return entry;
  }

  cancel(entry: ClockEntry): void {
    if (entry.cancelled) return;
    entry.cancelled = true;
    if (!entry.queued) return;
    this.cancelled++;
    // The mesh re-arms its GC timer on every topology change: do not let dead entries pile up.
    if (this.cancelled > 4096 && this.cancelled * 2 > this.heap.length) this.compact();
  }

  /** Live events queued. */
  get pending(): number {
    return this.heap.length - this.cancelled;
  }

  /** Drops cancelled entries from the queue. */
  compact(): void {
    const live = this.heap.filter((e) => !e.cancelled);
    live.sort((a, b) => a.at - b.at || a.seq - b.seq); // a sorted array is a valid heap
    this.heap = live;
    this.cancelled = 0;
  }

  /**
   * Runs events up to `deadline` (inclusive). After each batch of events sharing a timestamp,
   * `stop()` may end the run early (returns true then). The clock ends at `deadline` otherwise.
   */
  runUntil(deadline: number, stop?: () => boolean): boolean {
    return this.installed(() => {
      while (this.heap.length > 0 && this.heap[0]!.at <= deadline) {
        const t = this.heap[0]!.at;
        this.now = t;
        while (this.heap.length > 0 && this.heap[0]!.at === t) {
          const entry = this.pop()!;
          if (entry.cancelled) {
            this.cancelled--;
            continue;
          }
          if (entry.interval !== undefined) {
            entry.at = t + entry.interval;
            entry.seq = this.seq++;
            this.push(entry);
          }
          const outer = this.context;
          this.context = entry.context;
          try {
            entry.fn();
          } finally {
            this.context = outer;
          }
          this.afterEvent?.(entry.context);
        }
        if (stop?.()) return true;
      }
      this.now = Math.max(this.now, deadline);
      return false;
    });
  }

  /** Runs `fn` with the global timers replaced by this clock's (re-entrant). */
  installed<T>(fn: () => T): T {
    if (this.depth++ === 0) this.install();
    try {
      return fn();
    } finally {
      if (--this.depth === 0) this.uninstall();
    }
  }

  private install(): void {
    const g = globalThis;
    const saved: SavedTimers = {
      setTimeout: g.setTimeout,
      clearTimeout: g.clearTimeout,
      setInterval: g.setInterval,
      clearInterval: g.clearInterval,
    };
    this.saved = saved;
    const clear = (handle: unknown, real: (h: never) => void): void => {
      if (handle instanceof VirtualTimer) this.cancel(handle.entry);
      else if (handle !== undefined && handle !== null) real(handle as never);
    };
    const fake = {
      setTimeout: (fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) =>
        new VirtualTimer(this.schedule(ms ?? 0, () => fn(...args))),
      clearTimeout: (h: unknown) => clear(h, saved.clearTimeout),
      setInterval: (fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
        const period = Math.max(1, ms ?? 1);
        return new VirtualTimer(this.schedule(period, () => fn(...args), period));
      },
      clearInterval: (h: unknown) => clear(h, saved.clearInterval),
    };
    Object.assign(g, fake);
  }

  private uninstall(): void {
    if (this.saved) Object.assign(globalThis, this.saved);
    this.saved = undefined;
  }

  private less(a: ClockEntry, b: ClockEntry): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(entry: ClockEntry): void {
    const h = this.heap;
    entry.queued = true;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): ClockEntry | undefined {
    const h = this.heap;
    const top = h[0];
    if (top) top.queued = false;
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// Topologies (edges between node indices; the first index dials)

export type Edge = readonly [number, number];

export function ringEdges(n: number): Edge[] {
  if (n < 2) return [];
  if (n === 2) return [[0, 1]];
  return Array.from({ length: n }, (_, i): Edge => [i, (i + 1) % n]);
}

export function lineEdges(n: number): Edge[] {
  return Array.from({ length: Math.max(0, n - 1) }, (_, i): Edge => [i, i + 1]);
}

/**
 * A random connected graph with average degree about `degree` (edges = round(n·degree/2), at
 * least a spanning tree). The base is a random spanning tree, or with `twoConnected` a ring
 * over a random permutation (so removing any one node leaves it connected); then random extra
 * edges, no duplicates or self loops.
 */
export function randomConnectedEdges(
  n: number,
  degree: number,
  random: () => number,
  options: { twoConnected?: boolean } = {},
): Edge[] {
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = randomInt(random, i + 1);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const edges: Edge[] = [];
  const seen = new Set<string>();
  const add = (a: number, b: number): boolean => {
    if (a === b) return false;
    const key = a < b ? `${a},${b}` : `${b},${a}`;
    if (seen.has(key)) return false;
    seen.add(key);
    edges.push([a, b]);
    return true;
  };
  if (options.twoConnected) {
    for (const [a, b] of ringEdges(n)) add(perm[a]!, perm[b]!);
  } else {
    for (let i = 1; i < n; i++) add(perm[randomInt(random, i)]!, perm[i]!);
  }
  const target = Math.min(Math.round((n * degree) / 2), (n * (n - 1)) / 2);
  for (let tries = 0; edges.length < target && tries < target * 100; tries++) {
    add(randomInt(random, n), randomInt(random, n));
  }
  return edges;
}

// ---------------------------------------------------------------------------------------------
// Nodes and links

interface SimLink {
  readonly a: SimNode;
  readonly b: SimNode;
  alive: boolean;
  established: boolean;
  /** Latest delivery time scheduled per direction: [a→b, b→a] (FIFO, as TCP). */
  readonly lastAt: [number, number];
}

interface NodeBase {
  readonly name: PeerName;
  readonly nickname: string;
  readonly uid: bigint;
  /** 198.18.x.y */
  readonly address: string;
  alive: boolean;
  /** Live links, by neighbour. */
  readonly links: Map<PeerName, SimLink>;
}

/** A simulated weft router: a real `Mesh` on the simulated transport. */
export interface SimPeer extends NodeBase {
  readonly kind: "mesh";
  readonly mesh: Mesh;
  readonly counters: Counters;
  /** The last data topology the mesh reported (what the data plane would route over). */
  view: TopologyView | undefined;
  /** Every name the mesh reported through `peersRemoved`. */
  readonly removed: PeerName[];
  /** How many addresses the last `discovered` call reported. */
  discovered: number;
}

/** A node with no `Mesh`: receives into `onMessage`, sends whatever it likes with `send`. */
export interface SimExternal extends NodeBase {
  readonly kind: "external";
  readonly shortId: number;
  onMessage: ((from: PeerName, tag: number, body: Uint8Array) => void) | undefined;
  received: number;
  send(to: PeerName, tag: number, body: Uint8Array): void;
}

export type SimNode = SimPeer | SimExternal;

export interface SimOptions {
  /** Seed for names, UIDs, short ids, graphs, latency jitter and the gossip layers. Default 1. */
  seed?: number;
  /** One-way latency per message, ms. Default 2. */
  latencyMs?: number;
  /** Extra uniform latency in [0, jitterMs), ms (per-link FIFO is kept). Default 1. */
  jitterMs?: number;
  /** From connectionAdded to connectionEstablished (the heartbeat handshake), ms. Default 10. */
  establishDelayMs?: number;
}

export interface SimStats {
  /** Gossip messages passed to `send` (all tags). */
  messages: number;
  /** Their body bytes (no TCP framing or encryption overhead). */
  bytes: number;
  delivered: number;
  /** In flight when their link closed, or sent without a link. */
  dropped: number;
  byTag: Record<number, number>;
}

export interface MemoryEstimate {
  bytesPerPeer: number;
  method: "heap" | "estimate";
  detail: string;
}

const PORT = 6783;

// ---------------------------------------------------------------------------------------------
// The simulator

export class MeshSim {
  readonly clock = new VirtualClock();
  readonly stats: SimStats = { messages: 0, bytes: 0, delivered: 0, dropped: 0, byTag: {} };
  private readonly random: () => number;
  private readonly latencyMs: number;
  private readonly jitterMs: number;
  private readonly establishDelayMs: number;
  private readonly nodes = new Map<PeerName, SimNode>();
  private index = 0;
  private unestablished = 0;

  // Convergence bookkeeping: peers verified at `epoch` and untouched since need no re-check.
  private epoch = 0;
  private readonly verified = new Map<SimPeer, number>();
  private readonly knownVersion = new Map<SimPeer, bigint>();
  private readonly routesByView = new WeakMap<TopologyView, Routes>();
  private truthCache: { epoch: number; neighbours: Map<PeerName, PeerName[]> } | undefined;

  constructor(options: SimOptions = {}) {
    this.random = seededRandom(options.seed ?? 1);
    this.latencyMs = options.latencyMs ?? 2;
    this.jitterMs = options.jitterMs ?? 1;
    this.establishDelayMs = options.establishDelayMs ?? 10;
    this.clock.afterEvent = (context) => this.touched(context);
  }

  get now(): number {
    return this.clock.now;
  }

  node(name: PeerName): SimNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no simulated node ${formatPeerName(name)}`);
    return n;
  }

  /** Live mesh peers, in creation order. */
  livePeers(): SimPeer[] {
    return [...this.nodes.values()].filter((n): n is SimPeer => n.kind === "mesh" && n.alive);
  }

  // --- building

  /** Creates and starts `count` mesh peers with random names, UIDs and short ids. */
  addPeers(count: number): SimPeer[] {
    return this.clock.installed(() => {
      const out: SimPeer[] = [];
      for (let i = 0; i < count; i++) out.push(this.addPeer());
      return out;
    });
  }

  private identity(): { name: PeerName; nickname: string; uid: bigint; address: string } {
    let name: PeerName;
    do {
      // A locally administered unicast MAC, as Weave derives names.
      const hi = (randomInt(this.random, 0x10000) & 0xfeff) | 0x0200;
      name = hi * 2 ** 32 + randomInt(this.random, 2 ** 32);
    } while (this.nodes.has(name));
    const i = this.index++;
    const uid =
      (BigInt(randomInt(this.random, 2 ** 32)) << 32n) | BigInt(randomInt(this.random, 2 ** 32));
    return {
      name,
      nickname: `sim${i}`,
      uid: uid === 0n ? 1n : uid,
      address: `198.18.${Math.floor(i / 250) % 256}.${(i % 250) + 1}`,
    };
  }

  private addPeer(): SimPeer {
    const id = this.identity();
    const counters = new Counters();
    const gossipRandom = seededRandom(randomInt(this.random, 2 ** 32));
    // The closures below run only after `peer` is assigned (the constructor calls none).
    // eslint-disable-next-line prefer-const
    let peer: SimPeer;
    const mesh = new Mesh({
      self: { ...id, shortId: randomInt(this.random, 4096) },
      transport: {
        send: (to, tag, body) => this.transmit(peer, to, tag, body),
        backedUp: () => false,
        connectedNeighbours: () => [...peer.links.keys()],
      },
      hooks: {
        dataTopologyChanged: (view) => {
          peer.view = view;
        },
        peersRemoved: (names) => {
          peer.removed.push(...names);
        },
        discovered: (list) => {
          peer.discovered = list.length;
        },
      },
      counters,
      log: new Logger("error", { write() {} }),
      defaultPort: PORT,
      random: gossipRandom,
    });
    peer = {
      kind: "mesh",
      ...id,
      alive: true,
      links: new Map(),
      mesh,
      counters,
      view: undefined,
      removed: [],
      discovered: 0,
    };
    this.nodes.set(peer.name, peer);
    this.epoch++;
    this.within(peer, () => mesh.start());
    return peer;
  }

  /** A node without a `Mesh` (e.g. a hostile peer), connected like any other. */
  addExternal(): SimExternal {
    const id = this.identity();
    const node: SimExternal = {
      kind: "external",
      ...id,
      shortId: randomInt(this.random, 4096),
      alive: true,
      links: new Map(),
      onMessage: undefined,
      received: 0,
      send: (to, tag, body) => this.clock.installed(() => this.transmit(node, to, tag, body)),
    };
    this.nodes.set(node.name, node);
    this.epoch++;
    return node;
  }

  /** Connects `a` (dialler) and `b`: connectionAdded on both, established a little later. */
  connect(a: SimNode, b: SimNode): void {
    if (a === b) throw new Error("cannot connect a node to itself");
    if (!a.alive || !b.alive) throw new Error("cannot connect a dead node");
    if (a.links.has(b.name)) return;
    this.clock.installed(() => {
      const link: SimLink = { a, b, alive: true, established: false, lastAt: [0, 0] };
      a.links.set(b.name, link);
      b.links.set(a.name, link);
      this.unestablished++;
      this.epoch++;
      const ephemeral = 32768 + randomInt(this.random, 28232);
      this.added(a, b, { remoteTcpAddr: `${b.address}:${PORT}`, outbound: true });
      this.added(b, a, { remoteTcpAddr: `${a.address}:${ephemeral}`, outbound: false });
      this.clock.schedule(this.establishDelayMs, () => {
        if (!link.alive) return;
        link.established = true;
        this.unestablished--;
        this.epoch++;
        for (const [self, other] of [
          [a, b],
          [b, a],
        ] as const) {
          if (self.kind === "mesh")
            this.within(self, () => self.mesh.connectionEstablished(other.name));
        }
      });
    });
  }

  private added(
    self: SimNode,
    other: SimNode,
    addr: Pick<ConnectionSummary, "remoteTcpAddr" | "outbound">,
  ): void {
    if (self.kind !== "mesh") return;
    const intro = {
      name: other.name,
      nickname: other.nickname,
      uid: other.uid,
      shortId: other.kind === "mesh" ? other.mesh.shortId : other.shortId,
    };
    this.within(self, () =>
      self.mesh.connectionAdded(intro, { name: other.name, ...addr, established: false }),
    );
  }

  /** Connects nodes[i] to nodes[j] for every edge [i, j]. */
  connectEdges(nodes: readonly SimNode[], edges: readonly Edge[]): void {
    for (const [i, j] of edges) this.connect(nodes[i]!, nodes[j]!);
  }

  /** Builds a topology over `nodes`; returns its edges. */
  buildTopology(
    nodes: readonly SimNode[],
    kind: "random" | "random-2-connected" | "ring" | "line",
    degree = 4,
  ): Edge[] {
    const edges =
      kind === "ring"
        ? ringEdges(nodes.length)
        : kind === "line"
          ? lineEdges(nodes.length)
          : randomConnectedEdges(nodes.length, degree, this.random, {
              twoConnected: kind === "random-2-connected",
            });
    this.connectEdges(nodes, edges);
    return edges;
  }

  /** Closes the link between `a` and `b`: both ends call connectionRemoved. */
  disconnect(a: SimNode, b: SimNode): void {
    const link = a.links.get(b.name);
    if (!link) return;
    this.clock.installed(() => {
      link.alive = false;
      if (!link.established) this.unestablished--;
      a.links.delete(b.name);
      b.links.delete(a.name);
      this.epoch++;
      for (const [self, other] of [
        [a, b],
        [b, a],
      ] as const) {
        if (self.kind === "mesh" && self.alive) {
          this.within(self, () => self.mesh.connectionRemoved(other.name));
        }
      }
    });
  }

  /** Stops a node: all its links close (its neighbours call connectionRemoved). */
  kill(node: SimNode): void {
    this.clock.installed(() => {
      for (const name of [...node.links.keys()]) this.disconnect(node, this.node(name));
      node.alive = false;
      if (node.kind === "mesh") node.mesh.stop();
      this.epoch++;
    });
  }

  /** Stops every mesh (their timers are cancelled). */
  dispose(): void {
    this.clock.installed(() => {
      for (const n of this.nodes.values()) if (n.kind === "mesh" && n.alive) n.mesh.stop();
    });
  }

  // --- transport

  private transmit(from: SimNode, to: PeerName, tag: number, body: Uint8Array): void {
    const link = from.links.get(to);
    if (!link || !from.alive) {
      this.stats.dropped++;
      return;
    }
    this.stats.messages++;
    this.stats.bytes += body.length;
    this.stats.byTag[tag] = (this.stats.byTag[tag] ?? 0) + 1;
    const copy = body.slice();
    const dir = link.a === from ? 0 : 1;
    const dest = dir === 0 ? link.b : link.a;
    const at = Math.max(
      this.clock.now + this.latencyMs + this.random() * this.jitterMs,
      link.lastAt[dir],
    );
    link.lastAt[dir] = at;
    const outer = this.clock.context;
    this.clock.context = dest;
    try {
      this.clock.schedule(at - this.clock.now, () => {
        if (!link.alive || !dest.alive) {
          this.stats.dropped++;
          return;
        }
        this.stats.delivered++;
        if (dest.kind === "mesh") dest.mesh.handle(from.name, tag, copy);
        else {
          dest.received++;
          dest.onMessage?.(from.name, tag, copy);
        }
      });
    } finally {
      this.clock.context = outer;
    }
  }

  // --- running

  /** Advances virtual time by `ms`. */
  run(ms: number): void {
    this.clock.runUntil(this.clock.now + ms);
  }

  /**
   * Runs until converged (see the file comment), checking after every batch of simultaneous
   * events. Returns the virtual ms it took, or undefined if not converged within `timeoutMs`.
   */
  runUntilConverged(timeoutMs = 120_000): number | undefined {
    const start = this.clock.now;
    if (this.isConverged()) return 0;
    const done = this.clock.runUntil(start + timeoutMs, () => this.isConverged());
    return done ? this.clock.now - start : undefined;
  }

  private within<T>(node: SimNode, fn: () => T): T {
    const outer = this.clock.context;
    this.clock.context = node;
    try {
      return fn();
    } finally {
      this.clock.context = outer;
      this.touched(node);
    }
  }

  /** Something ran at `context`: it needs re-checking; if its own entry changed, everyone does. */
  private touched(context: unknown): void {
    if (typeof context !== "object" || context === null || !("kind" in context)) return;
    const node = context as SimNode;
    if (node.kind !== "mesh") return;
    this.verified.delete(node);
    const version = node.mesh.peers.version;
    if (this.knownVersion.get(node) !== version) {
      this.knownVersion.set(node, version);
      this.epoch++;
    }
  }

  // --- convergence

  isConverged(): boolean {
    if (this.unestablished > 0) return false;
    for (const n of this.nodes.values()) if (n.kind === "external" && n.alive) return false;
    const live = this.livePeers();
    for (const p of live) {
      if (this.verified.get(p) === this.epoch) continue;
      if (this.checkPeer(p, live) !== undefined) return false;
      this.verified.set(p, this.epoch);
    }
    return true;
  }

  /** Why the mesh has not converged: one line per failing peer (at most `limit`). */
  whyNotConverged(limit = 5): string[] {
    const out: string[] = [];
    if (this.unestablished > 0) out.push(`${this.unestablished} links not yet established`);
    for (const n of this.nodes.values()) {
      if (n.kind === "external" && n.alive) out.push(`external ${n.nickname} is alive`);
    }
    const live = this.livePeers();
    for (const p of live) {
      const why = this.checkPeer(p, live);
      if (why !== undefined) out.push(`${p.nickname}: ${why}`);
      if (out.length >= limit) break;
    }
    return out;
  }

  private truthNeighbours(): Map<PeerName, PeerName[]> {
    if (this.truthCache?.epoch !== this.epoch) {
      const neighbours = new Map<PeerName, PeerName[]>();
      for (const p of this.livePeers()) {
        neighbours.set(
          p.name,
          [...p.links.values()]
            .filter((l) => l.established)
            .map((l) => (l.a === p ? l.b.name : l.a.name))
            .sort((x, y) => x - y),
        );
      }
      this.truthCache = { epoch: this.epoch, neighbours };
    }
    return this.truthCache.neighbours;
  }

  private checkPeer(p: SimPeer, live: readonly SimPeer[]): string | undefined {
    const table = p.mesh.peers;
    if (table.size !== live.length) return `table has ${table.size} peers, want ${live.length}`;
    for (const q of live) {
      if (q === p) continue;
      const entry = table.get(q.name);
      if (!entry) return `${q.nickname} missing`;
      const want = q.mesh.peers.version;
      if (entry.uid !== q.uid || entry.version !== want) {
        return `${q.nickname} at uid ${entry.uid} v${entry.version}, want ${q.uid} v${want}`;
      }
    }
    const view = p.view;
    if (!view) return "no data topology yet";
    const truth = this.truthNeighbours();
    for (const q of live) {
      const got = view.neighbours(q.name);
      const want = truth.get(q.name)!;
      if (got.length !== want.length || got.some((n, i) => n !== want[i])) {
        return `data view of ${q.nickname} has ${got.length} links, want ${want.length}`;
      }
    }
    const reached = this.routesOf(p).unicastTable().size;
    if (reached !== live.length - 1) return `routes reach ${reached}, want ${live.length - 1}`;
    return undefined;
  }

  // --- route checks

  /** Routes over the peer's last data view ("data") or the mesh's own gossip routes. */
  routesOf(p: SimPeer, which: "data" | "gossip" = "data"): Routes {
    if (which === "gossip") return p.mesh.gossipRoutes;
    const view = p.view ?? { neighbours: () => [] };
    let routes = this.routesByView.get(view);
    if (!routes) {
      routes = new Routes(p.name);
      routes.recompute(view);
      this.routesByView.set(view, routes);
    }
    return routes;
  }

  /**
   * Floods from every live peer over every peer's broadcast next hops; returns the anomalies
   * (a peer reached other than exactly once, a hop over a link that does not exist).
   */
  floodProblems(which: "data" | "gossip" = "data", limit = 10): string[] {
    const live = this.livePeers();
    const byName = new Map(live.map((p) => [p.name, p]));
    const problems: string[] = [];
    for (const source of live) {
      const count = new Map<PeerName, number>();
      const queue: SimPeer[] = [source];
      for (let i = 0; i < queue.length; i++) {
        const at = queue[i]!;
        for (const hop of this.routesOf(at, which).broadcastNextHops(source.name)) {
          const next = byName.get(hop);
          if (!next || !at.links.get(hop)?.alive) {
            problems.push(`${source.nickname}: ${at.nickname} floods to a non-neighbour`);
            continue;
          }
          const c = (count.get(hop) ?? 0) + 1;
          count.set(hop, c);
          if (c === 1) queue.push(next);
        }
      }
      for (const p of live) {
        const want = p === source ? 0 : 1;
        const got = count.get(p.name) ?? 0;
        if (got !== want) {
          problems.push(`flood from ${source.nickname} reached ${p.nickname} ${got} times`);
        }
      }
      if (problems.length >= limit) break;
    }
    return problems.slice(0, limit);
  }

  /** Follows unicast next hops between every pair of live peers; returns the anomalies. */
  unicastProblems(which: "data" | "gossip" = "data", limit = 10): string[] {
    const live = this.livePeers();
    const byName = new Map(live.map((p) => [p.name, p]));
    const problems: string[] = [];
    for (const src of live) {
      for (const dst of live) {
        if (src === dst) continue;
        let at: SimPeer | undefined = src;
        let hops = 0;
        while (at !== dst && at !== undefined && hops <= live.length) {
          const hop = this.routesOf(at, which).unicastNextHop(dst.name);
          at = hop !== undefined && at.links.get(hop)?.alive ? byName.get(hop) : undefined;
          hops++;
        }
        if (at !== dst) problems.push(`${src.nickname} → ${dst.nickname} does not arrive`);
        if (problems.length >= limit) return problems;
      }
    }
    return problems;
  }

  // --- memory

  /**
   * Memory per live peer. With a baseline from `heapUsedAfterGc()` taken before the peers were
   * created (and gc available): the heap growth after a forced GC, divided by the peer count
   * (this includes the simulator's own per-peer state and pending events). Otherwise an
   * estimate from table sizes (entries × 200 B + connections × 120 B, rough V8 object sizes).
   */
  memoryPerPeer(baselineHeapBytes?: number): MemoryEstimate {
    const live = this.livePeers();
    this.clock.compact();
    const now = heapUsedAfterGc();
    if (baselineHeapBytes !== undefined && now !== undefined && live.length > 0) {
      return {
        bytesPerPeer: (now - baselineHeapBytes) / live.length,
        method: "heap",
        detail: "heapUsed delta after forced GC / peers (includes simulator state)",
      };
    }
    let total = 0;
    for (const p of live) {
      for (const entry of p.mesh.peers.list()) total += 200 + 120 * entry.connections.length;
    }
    return {
      bytesPerPeer: live.length > 0 ? total / live.length : 0,
      method: "estimate",
      detail: "table entries × 200 B + connections × 120 B",
    };
  }
}

let gcFunction: (() => void) | undefined | null = null;

/** `global.gc`, or the same function obtained by turning on --expose-gc at run time. */
function findGc(): (() => void) | undefined {
  if (gcFunction !== null) return gcFunction;
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === "function") return (gcFunction = g);
  try {
    setFlagsFromString("--expose-gc");
    const fn = runInNewContext("gc") as unknown;
    gcFunction = typeof fn === "function" ? (fn as () => void) : undefined;
  } catch {
    gcFunction = undefined;
  }
  return gcFunction;
}

/**
 * heapUsed after full GCs, repeated until it stops falling (one GC does not always free
 * everything unreachable), or undefined if GC cannot be forced.
 */
export function heapUsedAfterGc(): number | undefined {
  const gc = findGc();
  if (!gc) return undefined;
  gc();
  let used = process.memoryUsage().heapUsed;
  for (let i = 0; i < 10; i++) {
    gc();
    const now = process.memoryUsage().heapUsed;
    if (now >= used * 0.995) return Math.min(now, used);
    used = now;
  }
  return used;
}
