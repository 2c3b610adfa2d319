/**
 * The gossip channel layer (spec 2.4, 2.5.3, 6.3), after weaveworks/mesh: named channels, each
 * served by a `Gossiper`, over three TCP message kinds:
 *
 * - tag 4, gossip: anti-entropy. New data learnt from a neighbour is passed on, with us as the
 *   source, to a few random neighbours (not back to the sender);
 * - tag 5, unicast: point to point, relayed hop by hop along the all-connections unicast route,
 *   the body forwarded unchanged;
 * - tag 6, broadcast: flooded along the all-connections broadcast route of its original source,
 *   so that with a consistent topology every peer gets it once.
 *
 * Channels nobody registered here get Weave's "surrogate" treatment, so that a weft peer is a
 * good relay for `IPallocation` and `nameserver` traffic between Weave peers: unicasts to us
 * are dropped, everything else is relayed (gossip only if it was not seen in the last interval).
 *
 * Outgoing tag-4 and tag-6 data goes through a coalescing sender per (neighbour, channel): while
 * the connection is backed up, pending gossip merges into one item and pending broadcasts into
 * one item per original source, so memory stays bounded however long the socket is blocked.
 */

import type { Counters } from "../util/counters.js";
import { type Logger, RateLimitedLog } from "../util/log.js";
import {
  GossipEnvelopeError,
  TAG_GOSSIP,
  TAG_GOSSIP_BROADCAST,
  TAG_GOSSIP_UNICAST,
  decodeBroadcast,
  decodeGossip,
  decodeUnicast,
  encodeBroadcast,
  encodeGossip,
  encodeUnicast,
  validateChannelName,
} from "../wire/gossip-envelope.js";
import { type PeerName, formatPeerName } from "../wire/peer-name.js";

// ---------------------------------------------------------------------------------------------
// Interfaces

/**
 * Mergeable data waiting to be sent (like mesh's GossipData): pending data for one neighbour
 * merges while it is queued, and is encoded only when it is actually sent.
 */
export interface GossipData {
  /** This data combined with `other` (which comes from the same channel's gossiper). */
  merge(other: GossipData): GossipData;
  /** The payloads to send, one message each. */
  encode(): Uint8Array[];
}

/** The receiving side of one channel. Exceptions are caught, counted and logged. */
export interface Gossiper {
  /** Merges received gossip; returns what was new to us (to relay), or undefined. */
  onGossip(src: PeerName, payload: Uint8Array): GossipData | undefined;
  onUnicast(src: PeerName, payload: Uint8Array): void;
  /** Merges a received broadcast; returns what to propagate further, or undefined. */
  onBroadcast(src: PeerName, payload: Uint8Array): GossipData | undefined;
  /** Everything we know: sent on new connections and periodically. */
  fullState(): GossipData | undefined;
}

/** Implemented by the router. */
export interface GossipTransport {
  /** Sends tag 4/5/6 with `body` over the TCP connection to `neighbour`. */
  send(neighbour: PeerName, tag: number, body: Uint8Array): void;
  /** The connection's socket buffer is full: queue and coalesce until `drained(neighbour)`. */
  backedUp(neighbour: PeerName): boolean;
  /** All live connections (gossip does not need them to be established). */
  connectedNeighbours(): PeerName[];
}

/** Implemented by the router from `Routes` over the "all connections" topology (spec 6.3). */
export interface GossipRoutes {
  unicastNextHop(dst: PeerName): PeerName | undefined;
  broadcastNextHops(src: PeerName): readonly PeerName[];
  /** destination → next hop, for random neighbour selection. */
  unicastTable(): Map<PeerName, PeerName>;
}

export interface GossipLayerOptions {
  /** Uniform in [0, 1); injectable for tests. Default Math.random. */
  readonly random?: () => number;
  /** Period of the full-state gossip to random neighbours. Default 30 s. */
  readonly intervalMs?: number;
  readonly counters: Counters;
  readonly log: Logger;
  /** How long a surrogate remembers gossip it relayed. Default 30 s (one gossip interval). */
  readonly dedupIntervalMs?: number;
  /** Bound on the surrogate's memory of relayed gossip payloads. Default 4 MiB. */
  readonly maxSurrogateCacheBytes?: number;
  /** Bound on surrogate data queued for one backed-up neighbour. Default 4 MiB. */
  readonly maxSurrogateQueueBytes?: number;
  /** Clock for the surrogate memory (ms). Default Date.now. */
  readonly now?: () => number;
  /**
   * Neighbours every relay includes besides the random choice: those that can hear the mesh
   * only from us (their one link is to us), which a weighted draw picks least often.
   */
  readonly mustHear?: () => readonly PeerName[];
}

export const GOSSIP_INTERVAL_MS = 30_000;
const DEFAULT_SURROGATE_BYTES = 4 * 1024 * 1024;
/** Per-entry bookkeeping charged to the surrogate memory on top of the payload. */
const SURROGATE_ENTRY_OVERHEAD = 64;

// ---------------------------------------------------------------------------------------------
// Random neighbours (spec 2.5.3)

/**
 * Weave's choice of gossip targets: `n = trunc(min(2·log2(entries), distinct next hops))`
 * next hops, drawn without replacement, each weighted by how many destinations are routed
 * through it (favouring neighbours behind bottleneck links).
 *
 * `entries` counts ourselves, as Weave's table maps its own name to "unknown peer": a peer with
 * one neighbour has 2 entries, so n = min(2, 1) = 1, and any peer with a neighbour picks at
 * least one. Destinations whose next hop is in `except` (or is ourselves) carry no weight and
 * are not picked, but still count in `entries`, as in Weave.
 */
export function chooseRandomNeighbours(
  table: ReadonlyMap<PeerName, PeerName>,
  self: PeerName,
  except: ReadonlySet<PeerName>,
  random: () => number,
): PeerName[] {
  const weights = new Map<PeerName, number>();
  let entries = 1;
  let total = 0;
  for (const [dst, hop] of table) {
    if (dst === self) continue;
    entries++;
    if (hop === self || except.has(hop)) continue;
    weights.set(hop, (weights.get(hop) ?? 0) + 1);
    total++;
  }
  const needed = Math.trunc(Math.min(2 * Math.log2(entries), weights.size));
  const chosen: PeerName[] = [];
  while (chosen.length < needed) {
    let point = Math.min(Math.floor(random() * total), total - 1);
    for (const [hop, weight] of weights) {
      if (point < weight) {
        chosen.push(hop);
        weights.delete(hop);
        total -= weight;
        break;
      }
      point -= weight;
    }
  }
  return chosen;
}

// ---------------------------------------------------------------------------------------------
// FNV-64a (for the surrogate's duplicate detection, like mesh's)

/** FNV-1a, 64 bits, computed in four 16-bit limbs (exact without BigInt arithmetic per byte). */
export function fnv64a(data: Uint8Array): bigint {
  // offset basis 0xcbf29ce484222325; prime 0x100000001b3 = 2^40 + 0x1b3
  let h0 = 0x2325;
  let h1 = 0x8422;
  let h2 = 0x9ce4;
  let h3 = 0xcbf2;
  for (let i = 0; i < data.length; i++) {
    h0 ^= data[i]!;
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3 + (t0 >>> 16);
    const t2 = h2 * 0x1b3 + (t1 >>> 16) + ((h0 & 0xff) << 8);
    const t3 = h3 * 0x1b3 + (t2 >>> 16) + (h0 >>> 8) + ((h1 & 0xff) << 8);
    h0 = t0 & 0xffff;
    h1 = t1 & 0xffff;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  }
  return (BigInt(h3) << 48n) | (BigInt(h2) << 32n) | (BigInt(h1) << 16n) | BigInt(h0);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Surrogate data and memory

/**
 * What a surrogate relays: opaque messages, merged by concatenation (as mesh's
 * surrogateGossipData). `raw` items are whole envelope bodies sent verbatim (broadcasts);
 * otherwise they are payloads wrapped in a fresh envelope at send time.
 */
class SurrogateData implements GossipData {
  constructor(
    readonly items: readonly Uint8Array[],
    readonly raw: boolean,
  ) {}

  get bytes(): number {
    let n = 0;
    for (const item of this.items) n += item.length;
    return n;
  }

  merge(other: GossipData): GossipData {
    if (!(other instanceof SurrogateData) || other.raw !== this.raw) return other;
    return new SurrogateData([...this.items, ...other.items], this.raw);
  }

  encode(): Uint8Array[] {
    return [...this.items];
  }
}

interface SeenEntry {
  readonly channel: string;
  readonly payload: Uint8Array;
  readonly key: string;
  readonly at: number;
  readonly cost: number;
}

/**
 * Gossip payloads of unknown channels relayed recently, oldest first: forgotten after one
 * gossip interval, or earlier when over the byte budget.
 */
class SurrogateMemory {
  private readonly entries: (SeenEntry | undefined)[] = [];
  private head = 0;
  private readonly byKey = new Map<string, SeenEntry[]>();
  private bytes = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly maxBytes: number,
  ) {}

  /** True if (channel, payload) was seen within the interval; otherwise remembers it. */
  seen(channel: string, payload: Uint8Array, now: number): boolean {
    this.expire(now);
    const key = `${fnv64a(payload).toString(16)}/${channel}`;
    const candidates = this.byKey.get(key);
    if (candidates?.some((e) => bytesEqual(e.payload, payload))) return true;
    const cost = payload.length + channel.length + SURROGATE_ENTRY_OVERHEAD;
    if (cost > this.maxBytes) return false; // too big to remember; relay it anyway
    const entry: SeenEntry = { channel, payload, key, at: now, cost };
    this.entries.push(entry);
    if (candidates) candidates.push(entry);
    else this.byKey.set(key, [entry]);
    this.bytes += cost;
    while (this.bytes > this.maxBytes) this.evictOldest();
    return false;
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  private expire(now: number): void {
    while (this.head < this.entries.length && now - this.entries[this.head]!.at >= this.ttlMs) {
      this.evictOldest();
    }
  }

  private evictOldest(): void {
    const entry = this.entries[this.head];
    if (!entry) return;
    this.entries[this.head] = undefined;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries.splice(0, this.head);
      this.head = 0;
    }
    this.bytes -= entry.cost;
    const list = this.byKey.get(entry.key);
    if (list) {
      const i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byKey.delete(entry.key);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The layer

/** Pending output for one neighbour: per channel, gossip and (per original source) broadcasts. */
interface NeighbourQueue {
  readonly gossip: Map<string, GossipData>;
  readonly broadcasts: Map<string, Map<PeerName, GossipData>>;
  /** Bytes of surrogate data in the queue (bounded by maxSurrogateQueueBytes). */
  surrogateBytes: number;
  flushing: boolean;
}

export class GossipLayer {
  private readonly mustHear: () => readonly PeerName[];
  private readonly channels = new Map<string, Gossiper>();
  private readonly queues = new Map<PeerName, NeighbourQueue>();
  private readonly random: () => number;
  private readonly intervalMs: number;
  private readonly counters: Counters;
  private readonly now: () => number;
  private readonly maxSurrogateQueueBytes: number;
  private readonly memory: SurrogateMemory;
  private readonly malformedLog: RateLimitedLog;
  private readonly errorLog: RateLimitedLog;
  private readonly dropLog: RateLimitedLog;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly self: PeerName,
    private readonly transport: GossipTransport,
    private readonly routes: GossipRoutes,
    options: GossipLayerOptions,
  ) {
    this.mustHear = options.mustHear ?? (() => []);
    this.random = options.random ?? Math.random;
    this.intervalMs = options.intervalMs ?? GOSSIP_INTERVAL_MS;
    this.counters = options.counters;
    this.now = options.now ?? Date.now;
    this.maxSurrogateQueueBytes = options.maxSurrogateQueueBytes ?? DEFAULT_SURROGATE_BYTES;
    this.memory = new SurrogateMemory(
      options.dedupIntervalMs ?? GOSSIP_INTERVAL_MS,
      options.maxSurrogateCacheBytes ?? DEFAULT_SURROGATE_BYTES,
    );
    const log = options.log.child({ component: "gossip" });
    this.malformedLog = new RateLimitedLog(log, "warn");
    this.errorLog = new RateLimitedLog(log, "warn");
    this.dropLog = new RateLimitedLog(log, "debug");
  }

  /** Serves `channel` with `gossiper` from now on (no longer as a surrogate). */
  register(channel: string, gossiper: Gossiper): void {
    validateChannelName(channel);
    if (this.channels.has(channel)) throw new Error(`gossip channel ${channel} registered twice`);
    this.channels.set(channel, gossiper);
    // Surrogate data queued for this channel must not be merged with the gossiper's own.
    for (const [neighbour, q] of this.queues) {
      const pending = q.gossip.get(channel);
      if (pending instanceof SurrogateData) {
        q.gossip.delete(channel);
        q.surrogateBytes -= pending.bytes;
      }
      const broadcasts = q.broadcasts.get(channel);
      for (const [src, data] of broadcasts ?? []) {
        if (data instanceof SurrogateData) {
          broadcasts!.delete(src);
          q.surrogateBytes -= data.bytes;
        }
      }
      if (broadcasts?.size === 0) q.broadcasts.delete(channel);
      this.forgetIfIdle(neighbour, q);
    }
  }

  /** Starts the periodic full-state gossip. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.gossipAll(), this.intervalMs);
    this.timer.unref?.();
  }

  /** Stops the timer and drops everything queued. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.queues.clear();
  }

  // --- receiving ---

  /** A gossip message (tag 4, 5 or 6) from `from`. Never throws: bad input is counted. */
  handle(from: PeerName, tag: number, body: Uint8Array): void {
    this.counters.gossip_rx_messages++;
    try {
      switch (tag) {
        case TAG_GOSSIP:
          return this.handleGossip(from, body);
        case TAG_GOSSIP_UNICAST:
          return this.handleUnicast(from, body);
        case TAG_GOSSIP_BROADCAST:
          return this.handleBroadcast(body);
        default:
          throw new GossipEnvelopeError(`tag ${tag} is not a gossip message`);
      }
    } catch (err) {
      if (err instanceof GossipEnvelopeError) {
        this.counters.gossip_rx_malformed++;
        this.malformedLog.log("malformed gossip message dropped", {
          from: formatPeerName(from),
          tag,
          bytes: body?.length,
          error: err.message,
        });
      } else {
        this.counters.gossip_handler_errors++;
        this.errorLog.log("gossip message handling failed", {
          from: formatPeerName(from),
          tag,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  private handleGossip(from: PeerName, body: Uint8Array): void {
    const { channel, src, payload } = decodeGossip(body);
    const gossiper = this.channels.get(channel);
    let update: GossipData | undefined;
    if (gossiper) {
      update = gossiper.onGossip(src, payload);
    } else {
      this.counters.gossip_rx_surrogate++;
      if (this.memory.seen(channel, payload, this.now())) {
        this.counters.gossip_surrogate_duplicates++;
        return;
      }
      update = new SurrogateData([payload], false);
    }
    if (update) this.relay(channel, update, new Set([from, src]));
  }

  private handleUnicast(from: PeerName, body: Uint8Array): void {
    const { channel, src, dst, payload } = decodeUnicast(body);
    if (dst !== this.self) {
      this.sendUnicastBody(channel, dst, body);
      return;
    }
    const gossiper = this.channels.get(channel);
    if (gossiper) {
      gossiper.onUnicast(src, payload);
      return;
    }
    this.counters.gossip_rx_surrogate++;
    this.counters.gossip_surrogate_unicast_dropped++;
    this.dropLog.log("unicast for us on an unknown channel dropped", {
      channel,
      src: formatPeerName(src),
      from: formatPeerName(from),
    });
  }

  private handleBroadcast(body: Uint8Array): void {
    const { channel, src, payload } = decodeBroadcast(body);
    if (src === this.self) {
      // Our own flood coming back (topology in flux): nothing in it can be new to us.
      this.counters.gossip_rx_own_broadcast++;
      return;
    }
    const gossiper = this.channels.get(channel);
    let update: GossipData | undefined;
    if (gossiper) {
      update = gossiper.onBroadcast(src, payload);
    } else {
      this.counters.gossip_rx_surrogate++;
      update = new SurrogateData([body], true); // relayed verbatim
    }
    if (update) this.relayBroadcast(channel, src, update);
  }

  // --- sending ---

  /** Sends `payload` to `dst` along the unicast route. False if there is no route. */
  gossipUnicast(channel: string, dst: PeerName, payload: Uint8Array): boolean {
    const body = encodeUnicast({ channel, src: this.self, dst, payload });
    return this.sendUnicastBody(channel, dst, body);
  }

  /** Floods `data` from us to every peer, along our broadcast route. */
  gossipBroadcast(channel: string, data: GossipData): void {
    validateChannelName(channel);
    this.relayBroadcast(channel, this.self, data);
  }

  /** Sends `data` as tag-4 gossip to random neighbours. */
  gossip(channel: string, data: GossipData): void {
    validateChannelName(channel);
    this.relay(channel, data, new Set([this.self]));
  }

  /** Queues the full state of every channel to a newly connected (new or restarted) peer. */
  /**
   * Sends `data` to every connected neighbour, not a random subset: for our own small updates,
   * so that a lightly connected neighbour never misses them (it would otherwise wait for a
   * periodic round, and might garbage-collect the mesh meanwhile).
   */
  gossipToAll(channel: string, data: GossipData): void {
    validateChannelName(channel);
    for (const neighbour of this.transport.connectedNeighbours()) {
      this.enqueueGossip(neighbour, channel, data);
    }
  }

  newConnection(neighbour: PeerName): void {
    for (const [channel, gossiper] of this.channels) {
      const data = this.fullStateOf(channel, gossiper);
      if (data) this.enqueueGossip(neighbour, channel, data);
    }
  }

  /** Forgets everything queued for a closed connection. */
  connectionClosed(neighbour: PeerName): void {
    this.queues.delete(neighbour);
  }

  /** The connection to `neighbour` can take more: sends what is pending. */
  drained(neighbour: PeerName): void {
    this.flush(neighbour);
  }

  /** The periodic round: every channel's full state to random neighbours. */
  gossipAll(): void {
    for (const [channel, gossiper] of this.channels) {
      const data = this.fullStateOf(channel, gossiper);
      if (data) this.gossip(channel, data);
    }
  }

  /** Pending items for `neighbour` (tag-4 items, tag-6 items), for status and tests. */
  pending(neighbour: PeerName): { gossip: number; broadcasts: number } {
    const q = this.queues.get(neighbour);
    let broadcasts = 0;
    for (const bySource of q?.broadcasts.values() ?? []) broadcasts += bySource.size;
    return { gossip: q?.gossip.size ?? 0, broadcasts };
  }

  /** Surrogate gossip payloads currently remembered for duplicate detection. */
  get surrogateMemorySize(): number {
    return this.memory.size;
  }

  private fullStateOf(channel: string, gossiper: Gossiper): GossipData | undefined {
    try {
      return gossiper.fullState();
    } catch (err) {
      this.counters.gossip_handler_errors++;
      this.errorLog.log("gossiper failed to produce its state", {
        channel,
        error: err instanceof Error ? err.message : String(err),
      });
      return undefined;
    }
  }

  private sendUnicastBody(channel: string, dst: PeerName, body: Uint8Array): boolean {
    const hop = this.routes.unicastNextHop(dst);
    if (hop === undefined || hop === this.self || !this.isConnected(hop)) {
      this.counters.gossip_unicast_unroutable++;
      this.dropLog.log("gossip unicast without a route dropped", {
        channel,
        dst: formatPeerName(dst),
      });
      return false;
    }
    this.transmit(hop, TAG_GOSSIP_UNICAST, body);
    return true;
  }

  /** Tag-4 data to random neighbours, none of which route through `except`. */
  private relay(channel: string, data: GossipData, except: ReadonlySet<PeerName>): void {
    const chosen = chooseRandomNeighbours(
      this.routes.unicastTable(),
      this.self,
      except,
      this.random,
    );
    const connected = new Set(this.transport.connectedNeighbours());
    const targets = new Set(chosen);
    for (const neighbour of this.mustHear()) if (!except.has(neighbour)) targets.add(neighbour);
    for (const neighbour of targets) {
      if (connected.has(neighbour)) this.enqueueGossip(neighbour, channel, data);
    }
  }

  private relayBroadcast(channel: string, src: PeerName, data: GossipData): void {
    const connected = new Set(this.transport.connectedNeighbours());
    for (const hop of this.routes.broadcastNextHops(src)) {
      if (hop !== this.self && connected.has(hop)) this.enqueueBroadcast(hop, channel, src, data);
    }
  }

  private isConnected(neighbour: PeerName): boolean {
    return this.transport.connectedNeighbours().includes(neighbour);
  }

  private queueFor(neighbour: PeerName): NeighbourQueue {
    let q = this.queues.get(neighbour);
    if (!q) {
      q = { gossip: new Map(), broadcasts: new Map(), surrogateBytes: 0, flushing: false };
      this.queues.set(neighbour, q);
    }
    return q;
  }

  /** False (and counted) if surrogate data would overflow the neighbour's budget. */
  private admitSurrogate(q: NeighbourQueue, data: GossipData): boolean {
    if (!(data instanceof SurrogateData)) return true;
    if (q.surrogateBytes + data.bytes > this.maxSurrogateQueueBytes) {
      this.counters.gossip_surrogate_queue_dropped++;
      return false;
    }
    q.surrogateBytes += data.bytes;
    return true;
  }

  private enqueueGossip(neighbour: PeerName, channel: string, data: GossipData): void {
    const q = this.queueFor(neighbour);
    if (!this.admitSurrogate(q, data)) return;
    const pending = q.gossip.get(channel);
    q.gossip.set(channel, pending ? pending.merge(data) : data);
    this.flush(neighbour);
  }

  private enqueueBroadcast(
    neighbour: PeerName,
    channel: string,
    src: PeerName,
    data: GossipData,
  ): void {
    const q = this.queueFor(neighbour);
    if (!this.admitSurrogate(q, data)) return;
    let bySource = q.broadcasts.get(channel);
    if (!bySource) {
      bySource = new Map();
      q.broadcasts.set(channel, bySource);
    }
    const pending = bySource.get(src);
    bySource.set(src, pending ? pending.merge(data) : data);
    this.flush(neighbour);
  }

  /**
   * Sends pending items to `neighbour` until it backs up: all channels' gossip first, then
   * broadcasts. Items are taken off the queue before sending, so a re-entrant enqueue (a
   * synchronous transport) just adds to what this loop is draining.
   */
  private flush(neighbour: PeerName): void {
    const q = this.queues.get(neighbour);
    if (!q || q.flushing) return;
    q.flushing = true;
    try {
      while (!this.transport.backedUp(neighbour)) {
        const next = this.takeNext(q);
        if (!next) break;
        this.sendItem(neighbour, next);
      }
    } finally {
      q.flushing = false;
      this.forgetIfIdle(neighbour, q);
    }
  }

  private takeNext(
    q: NeighbourQueue,
  ): { channel: string; src: PeerName | undefined; data: GossipData } | undefined {
    for (const [channel, data] of q.gossip) {
      q.gossip.delete(channel);
      if (data instanceof SurrogateData) q.surrogateBytes -= data.bytes;
      return { channel, src: undefined, data };
    }
    for (const [channel, bySource] of q.broadcasts) {
      for (const [src, data] of bySource) {
        bySource.delete(src);
        if (bySource.size === 0) q.broadcasts.delete(channel);
        if (data instanceof SurrogateData) q.surrogateBytes -= data.bytes;
        return { channel, src, data };
      }
      q.broadcasts.delete(channel);
    }
    return undefined;
  }

  private sendItem(
    neighbour: PeerName,
    item: { channel: string; src: PeerName | undefined; data: GossipData },
  ): void {
    const { channel, src, data } = item;
    let payloads: Uint8Array[];
    try {
      payloads = data.encode();
    } catch (err) {
      this.counters.gossip_handler_errors++;
      this.errorLog.log("gossip data failed to encode", {
        channel,
        error: err instanceof Error ? err.message : String(err),
      });
      return;
    }
    const verbatim = data instanceof SurrogateData && data.raw;
    for (const payload of payloads) {
      try {
        if (src === undefined) {
          this.transmit(neighbour, TAG_GOSSIP, encodeGossip({ channel, src: this.self, payload }));
        } else {
          const body = verbatim ? payload : encodeBroadcast({ channel, src, payload });
          this.transmit(neighbour, TAG_GOSSIP_BROADCAST, body);
        }
      } catch (err) {
        if (!(err instanceof GossipEnvelopeError)) throw err;
        this.counters.gossip_handler_errors++;
        this.errorLog.log("gossip payload cannot be sent", { channel, error: err.message });
      }
    }
  }

  private transmit(neighbour: PeerName, tag: number, body: Uint8Array): void {
    this.counters.gossip_tx_messages++;
    this.transport.send(neighbour, tag, body);
  }

  private forgetIfIdle(neighbour: PeerName, q: NeighbourQueue): void {
    if (!q.flushing && q.gossip.size === 0 && q.broadcasts.size === 0) {
      this.queues.delete(neighbour);
    }
  }
}
