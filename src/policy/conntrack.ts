/**
 * Connection tracking for network policy in the userspace switch.
 *
 * Network policy says: a new connection is checked against the policies; a packet of an
 * established connection is accepted. For frames through weft's own switch (which the kernel's
 * conntrack never sees), this tracker tells the two apart:
 *
 *  - `classify(pkt)` says what a parsed IPv4 packet is: "established" (it belongs to a tracked
 *    flow, in either direction), "related" (an ICMP error about a tracked flow), "new" (the
 *    first packet of a flow, to be checked against the policies) or "invalid" (neither: e.g. a
 *    TCP segment that is not a SYN for an unknown flow, an echo reply nobody asked for, an
 *    impossible combination of TCP flags, or an ICMP error about nothing we track).
 *  - `commit(pkt)` starts tracking the flow of a "new" packet. Call it only once the policy
 *    allowed that packet: a denied flow is never tracked, so its next packet is "new" again.
 *
 * Unlike Linux's ctstate, "established" here means "belongs to a tracked, hence allowed, flow",
 * which includes a flow whose first packet has not been answered yet (a retransmitted SYN).
 *
 * Flows are keyed by their 5-tuple (addresses, protocol, ports), matched in both directions; the
 * direction of the first packet is the original one. ICMP queries (echo, timestamp, information,
 * address mask) are keyed by addresses, identifier and query type, and only the matching reply
 * type from the queried host counts as the reply. Other IP protocols are keyed by addresses and
 * protocol. SCTP is tracked like UDP (by ports, unreplied/replied), without its own states.
 *
 * TCP follows a simplified Linux state machine, without sequence-number windows (so an RST is
 * believed): SYN_SENT -> SYN_RECV on the SYN-ACK -> ESTABLISHED on the ACK -> FIN_WAIT on the
 * first FIN -> LAST_ACK on the second FIN -> TIME_WAIT on the ACK of the second FIN; an RST
 * from either side -> CLOSE. A SYN (without ACK) to a flow in TIME_WAIT or CLOSE reopens it: the
 * old entry goes and the SYN is "new". Combinations of flags Linux calls invalid (SYN+FIN, no
 * flags, FIN without ACK, ...) are "invalid" in every state.
 *
 * Fragments: only the first fragment of a datagram has ports. When it is accepted (established
 * or related, or committed), the datagram (addresses, protocol, IP identification) is
 * remembered for `fragment` ms, and its later fragments get the same verdict; a later fragment
 * of a datagram whose first fragment was not accepted (or came later) is "invalid".
 *
 * The tables are bounded: at most `maxEntries` flows (and `maxFragments` datagrams). They are
 * hash tables over typed arrays, with a least-recently-used list: classify and commit allocate
 * nothing (see TupleTable), every operation is O(1), and memory grows with use up to the bound
 * (about 50 bytes a flow). When the flow table is full, a new flow takes the place of an
 * expired flow, else of an unanswered one, among the 8 least recently used; else of the least
 * recently used (counted in `evicted`). Expired entries go when met (a lookup, the least
 * recently used one on every call, or `expire()`), and are counted in `expired`. The hash is
 * seeded per instance, so tuples cannot be chosen to collide.
 *
 * Not in the key: the VLAN. Use one tracker per network where address spaces may overlap.
 * Strictness has a price: TCP connections are not picked up mid-stream (Linux's tcp_loose), so
 * after a restart, or an eviction, the segments of a connection opened before are "invalid".
 */

import { randomBytes } from "node:crypto";
import {
  IPPROTO_ICMP,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  PARSE_OK,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  TCP_URG,
  icmpRequestType,
  type ParsedPacket,
} from "./packet.js";

export type Verdict = "established" | "related" | "new" | "invalid";

/** Idle timeouts in milliseconds: an entry lives this long after its last packet. */
export interface ConnTrackTimeouts {
  /** A SYN seen, no answer yet (Linux: 120 s). */
  tcpSynSent: number;
  /** SYN-ACK seen, waiting for the handshake's ACK (Linux: 60 s). */
  tcpSynRecv: number;
  /** An open connection. Linux keeps 5 days, far too long for a userspace table: 2 h. */
  tcpEstablished: number;
  /** One side has closed (sent FIN); the other may still send (Linux: 120 s). */
  tcpFinWait: number;
  /** Both sides have sent FIN; waiting for the last ACK (Linux: 30 s). */
  tcpLastAck: number;
  /** Closed; absorbs late retransmissions. 60 s, the Linux TCP stack's own TIME_WAIT. */
  tcpTimeWait: number;
  /** Reset; absorbs late packets (Linux: 10 s). */
  tcpClose: number;
  /** UDP (and SCTP) before any reply (Linux: 30 s). */
  udp: number;
  /** UDP (and SCTP) once replied, as Linux's "stream" (120 s). */
  udpStream: number;
  /** ICMP queries: echo, timestamp, ... (Linux: 30 s). */
  icmp: number;
  /** Other IP protocols, keyed by addresses (Linux: 600 s; 2 min here). */
  generic: number;
  /** A fragmented datagram, from its first fragment to its last (Linux ipfrag_time: 30 s). */
  fragment: number;
}

export const DEFAULT_CONNTRACK_TIMEOUTS: Readonly<ConnTrackTimeouts> = Object.freeze({
  tcpSynSent: 120_000,
  tcpSynRecv: 60_000,
  tcpEstablished: 2 * 3_600_000,
  tcpFinWait: 120_000,
  tcpLastAck: 30_000,
  tcpTimeWait: 60_000,
  tcpClose: 10_000,
  udp: 30_000,
  udpStream: 120_000,
  icmp: 30_000,
  generic: 120_000,
  fragment: 30_000,
});

/** Largest table accepted (the tables are typed arrays, 40 bytes a slot and its buckets). */
export const CONNTRACK_MAX_ENTRIES = 1 << 24;
export const DEFAULT_MAX_FRAGMENTS = 4096;

export interface ConnTrackerOptions {
  /** Most flows tracked at once (1 .. 2^24). */
  maxEntries: number;
  /**
   * Clock in ms for calls that pass no `now` (default Date.now). Use one clock throughout. On
   * the hot path, read the clock once per batch of frames and pass it: a Date.now() per call
   * costs a heap number per packet.
   */
  now?: () => number;
  timeouts?: Partial<ConnTrackTimeouts>;
  /** Most fragmented datagrams remembered at once (default min(maxEntries, 4096)). */
  maxFragments?: number;
  /** Hash seed (default random); only tests need to fix it. */
  seed?: number;
}

export type TcpStateName =
  "SYN_SENT" | "SYN_RECV" | "ESTABLISHED" | "FIN_WAIT" | "LAST_ACK" | "TIME_WAIT" | "CLOSE";

/** A tracked flow, as `inspect` and `list` show it (not used on the hot path). */
export interface ConnTrackEntry {
  protocol: number;
  /** The original direction: who sent the first packet. */
  src: number;
  dst: number;
  /** Ports; for ICMP queries, srcPort is the identifier and dstPort the request type. */
  srcPort: number;
  dstPort: number;
  /** TCP state, or "UNREPLIED" / "REPLIED" for other protocols. */
  state: TcpStateName | "UNREPLIED" | "REPLIED";
  /** A reply was seen (for TCP: the SYN-ACK). */
  replied: boolean;
  /** The flow went past its opening (TCP established, other protocols replied). */
  assured: boolean;
  expiresAt: number;
}

// TCP states (the state column; 0 is unused).
const SYN_SENT = 1;
const SYN_RECV = 2;
const ESTABLISHED = 3;
const FIN_WAIT = 4;
const LAST_ACK = 5;
const TIME_WAIT = 6;
const CLOSE = 7;
const TCP_STATE_NAMES: readonly TcpStateName[] = [
  "CLOSE",
  "SYN_SENT",
  "SYN_RECV",
  "ESTABLISHED",
  "FIN_WAIT",
  "LAST_ACK",
  "TIME_WAIT",
  "CLOSE",
];

// Flag bits (the flags column).
const F_REPLIED = 1;
const F_ASSURED = 2;
const F_FIN_ORIG = 4;
const F_FIN_REPLY = 8;
/** The second FIN came from the reply side (valid once both FIN bits are set). */
const F_LAST_FIN_REPLY = 16;

// Verdicts of the fragment table (its state column).
const FRAG_ESTABLISHED = 1;
const FRAG_RELATED = 2;

/** The TCP flags that matter for validity and state (FIN SYN RST ACK URG; not PSH ECE CWR). */
const TCP_STATE_FLAGS = 0x37;
const TCP_MAIN_FLAGS = TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK;

/** Linux's valid TCP flag combinations (tcp_valid_flags), indexed by flags & TCP_STATE_FLAGS. */
const TCP_VALID = new Uint8Array(64);
for (const f of [
  TCP_SYN,
  TCP_SYN | TCP_URG,
  TCP_SYN | TCP_ACK,
  TCP_RST,
  TCP_RST | TCP_ACK,
  TCP_FIN | TCP_ACK,
  TCP_FIN | TCP_ACK | TCP_URG,
  TCP_ACK,
  TCP_ACK | TCP_URG,
]) {
  TCP_VALID[f] = 1;
}

/** How many of the least recently used flows a full table looks at to choose a victim. */
const EVICTION_WINDOW = 8;
const INITIAL_CAPACITY = 1024;
const RECORD_BYTES = 40;
const RECORD_INTS = RECORD_BYTES / 4;
const RECORD_DOUBLES = RECORD_BYTES / 8;

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

// The key cells of a TupleTable (see `key`).
const K_SRC = 0;
const K_DST = 1;
const K_PORTS = 2;
const K_PROTO = 3;
const K_HASH = 4;

/**
 * An open hash table of (src, srcPort, dst, dstPort, protocol) tuples, with a doubly linked
 * least-recently-used list and a free list through the same slots. Each slot is one 40-byte
 * record in a single ArrayBuffer (so that a lookup touches one or two cache lines):
 *
 *   int32 [0] hash  [1] src  [2] dst  [3] srcPort << 16 | dstPort
 *         [4] protocol | state << 8 | flags << 16  [5] next in chain  [6] LRU prev  [7] LRU next
 *   float64 [4] (bytes 32..39) expiry time
 *
 * The hash is symmetric in the two endpoints, so a tuple and its reverse share a chain and one
 * lookup can match either. Slots grow by doubling up to `max`; the caller makes room before
 * inserting into a full table.
 *
 * Addresses (up to 2^32) and times (Date.now() is about 2^40) are not small integers to V8:
 * passed to or returned from a function that is not inlined, each would be boxed in a fresh
 * heap number. So the tuple to look up or insert travels in `key`, the current time in the
 * shared `clock` cell, and the methods only take and return slots, small numbers and booleans.
 */
class TupleTable {
  size = 0;
  /** Set by `find`: the match was the reverse of the stored tuple. */
  lastReply = false;
  head = -1;
  tail = -1;
  /** The tuple for `find` and `insert`: src, dst, srcPort << 16 | dstPort, protocol (as int32). */
  readonly key = new Int32Array(5);

  private capacity: number;
  private used = 0;
  private freeHead = -1;
  private mask = 0;
  private buckets: Int32Array;
  private r: Int32Array;
  private d: Float64Array;

  constructor(
    readonly max: number,
    private readonly seed: number,
    /** The current time, [0], set by the owner before each operation. */
    private readonly clock: Float64Array,
  ) {
    this.capacity = Math.min(max, INITIAL_CAPACITY);
    const buffer = new ArrayBuffer(this.capacity * RECORD_BYTES);
    this.r = new Int32Array(buffer);
    this.d = new Float64Array(buffer);
    this.buckets = this.makeBuckets();
  }

  private makeBuckets(): Int32Array {
    let n = 16;
    while (n < this.capacity * 2) n *= 2;
    this.mask = n - 1;
    return new Int32Array(n).fill(-1);
  }

  /** Hashes `key` into key[K_HASH]. */
  private hashKey(): void {
    const k = this.key;
    const seed = this.seed;
    const ports = k[K_PORTS]!;
    const a = fmix((k[K_SRC]! ^ seed) + Math.imul((ports >>> 16) ^ 0x5bd1, 0x9e3779b1));
    const b = fmix((k[K_DST]! ^ seed) + Math.imul((ports & 0xffff) ^ 0x5bd1, 0x9e3779b1));
    k[K_HASH] = fmix((a + b) ^ Math.imul(k[K_PROTO]! + 1, 0x27d4eb2f) ^ (seed >>> 3));
  }

  /**
   * The slot holding `key` (or, with `either`, its reverse), or -1. Sets `lastReply` when the
   * reverse matched.
   */
  find(either: boolean): number {
    this.hashKey();
    const k = this.key;
    const r = this.r;
    const h = k[K_HASH]!;
    const src = k[K_SRC]!;
    const dst = k[K_DST]!;
    const ports = k[K_PORTS]!;
    const proto = k[K_PROTO]!;
    const reversed = (ports << 16) | (ports >>> 16);
    let i = this.buckets[h & this.mask]!;
    while (i >= 0) {
      const at = i * RECORD_INTS;
      if (r[at] === h && (r[at + 4]! & 0xff) === proto) {
        if (r[at + 1] === src && r[at + 2] === dst && r[at + 3] === ports) {
          this.lastReply = false;
          return i;
        }
        if (either && r[at + 1] === dst && r[at + 2] === src && r[at + 3] === reversed) {
          this.lastReply = true;
          return i;
        }
      }
      i = r[at + 5]!;
    }
    return -1;
  }

  /**
   * Adds `key` (not present; table not full) as the most recently used, with state and flags 0
   * and expiry now + timeout; returns its slot.
   */
  insert(timeout: number): number {
    let i = this.freeHead;
    if (i >= 0) {
      this.freeHead = this.r[i * RECORD_INTS + 5]!;
    } else {
      if (this.used === this.capacity) this.grow();
      i = this.used++;
    }
    this.hashKey();
    const k = this.key;
    const r = this.r;
    const at = i * RECORD_INTS;
    const h = k[K_HASH]!;
    const b = h & this.mask;
    r[at] = h;
    r[at + 1] = k[K_SRC]!;
    r[at + 2] = k[K_DST]!;
    r[at + 3] = k[K_PORTS]!;
    r[at + 4] = k[K_PROTO]! & 0xff;
    r[at + 5] = this.buckets[b]!;
    r[at + 6] = this.tail;
    r[at + 7] = -1;
    this.d[i * RECORD_DOUBLES + 4] = this.clock[0]! + timeout;
    this.buckets[b] = i;
    if (this.tail >= 0) r[this.tail * RECORD_INTS + 7] = i;
    else this.head = i;
    this.tail = i;
    this.size++;
    return i;
  }

  remove(i: number): void {
    const r = this.r;
    const at = i * RECORD_INTS;
    const b = r[at]! & this.mask;
    let j = this.buckets[b]!;
    if (j === i) {
      this.buckets[b] = r[at + 5]!;
    } else {
      while (j >= 0 && r[j * RECORD_INTS + 5] !== i) j = r[j * RECORD_INTS + 5]!;
      if (j >= 0) r[j * RECORD_INTS + 5] = r[at + 5]!;
    }
    const p = r[at + 6]!;
    const n = r[at + 7]!;
    if (p >= 0) r[p * RECORD_INTS + 7] = n;
    else this.head = n;
    if (n >= 0) r[n * RECORD_INTS + 6] = p;
    else this.tail = p;
    r[at + 5] = this.freeHead;
    this.freeHead = i;
    this.size--;
  }

  /** Marks a slot as the most recently used. */
  touch(i: number): void {
    const tail = this.tail;
    if (i === tail) return;
    const r = this.r;
    const at = i * RECORD_INTS;
    const p = r[at + 6]!;
    const n = r[at + 7]!; // i is not the tail, so n >= 0
    if (p >= 0) r[p * RECORD_INTS + 7] = n;
    else this.head = n;
    r[n * RECORD_INTS + 6] = p;
    r[at + 6] = tail;
    r[at + 7] = -1;
    r[tail * RECORD_INTS + 7] = i;
    this.tail = i;
  }

  /** Sets a slot to expire `timeout` ms from now, and makes it the most recently used. */
  refresh(i: number, timeout: number): void {
    this.d[i * RECORD_DOUBLES + 4] = this.clock[0]! + timeout;
    this.touch(i);
  }

  /** Sets a slot to expire `timeout` ms from now, keeping its place. */
  extend(i: number, timeout: number): void {
    this.d[i * RECORD_DOUBLES + 4] = this.clock[0]! + timeout;
  }

  /** Whether a slot's time is up. */
  isExpired(i: number): boolean {
    return this.d[i * RECORD_DOUBLES + 4]! <= this.clock[0]!;
  }

  next(i: number): number {
    return this.r[i * RECORD_INTS + 7]!;
  }

  proto(i: number): number {
    return this.r[i * RECORD_INTS + 4]! & 0xff;
  }

  state(i: number): number {
    return (this.r[i * RECORD_INTS + 4]! >>> 8) & 0xff;
  }

  setState(i: number, state: number): void {
    const at = i * RECORD_INTS + 4;
    this.r[at] = (this.r[at]! & ~0xff00) | (state << 8);
  }

  flags(i: number): number {
    return (this.r[i * RECORD_INTS + 4]! >>> 16) & 0xff;
  }

  setFlags(i: number, flags: number): void {
    const at = i * RECORD_INTS + 4;
    this.r[at] = (this.r[at]! & 0xffff) | (flags << 16);
  }

  addFlags(i: number, flags: number): void {
    const at = i * RECORD_INTS + 4;
    this.r[at] = this.r[at]! | (flags << 16);
  }

  // Off the hot path (inspect, list).

  src(i: number): number {
    return this.r[i * RECORD_INTS + 1]! >>> 0;
  }

  dst(i: number): number {
    return this.r[i * RECORD_INTS + 2]! >>> 0;
  }

  srcPort(i: number): number {
    return this.r[i * RECORD_INTS + 3]! >>> 16;
  }

  dstPort(i: number): number {
    return this.r[i * RECORD_INTS + 3]! & 0xffff;
  }

  expiresAt(i: number): number {
    return this.d[i * RECORD_DOUBLES + 4]!;
  }

  clear(): void {
    this.size = 0;
    this.used = 0;
    this.freeHead = -1;
    this.head = -1;
    this.tail = -1;
    this.buckets.fill(-1);
  }

  private grow(): void {
    const cap = Math.min(this.max, this.capacity * 2);
    const buffer = new ArrayBuffer(cap * RECORD_BYTES);
    new Uint8Array(buffer).set(new Uint8Array(this.r.buffer));
    this.r = new Int32Array(buffer);
    this.d = new Float64Array(buffer);
    this.capacity = cap;
    this.buckets = this.makeBuckets();
    // Rehash: every used slot is live here (growth happens only with an empty free list).
    const r = this.r;
    for (let i = this.head; i >= 0; i = r[i * RECORD_INTS + 7]!) {
      const b = r[i * RECORD_INTS]! & this.mask;
      r[i * RECORD_INTS + 5] = this.buckets[b]!;
      this.buckets[b] = i;
    }
  }
}

const KEY_NONE = 0;
/** The key matches a flow in either direction. */
const KEY_EITHER = 1;
/** The key is a flow's original tuple exactly (ICMP queries: direction comes from the type). */
const KEY_EXACT = 2;

export class ConnTracker {
  /** Live flows pushed out of a full table. */
  evicted = 0;
  /** Flows removed because their timeout had passed. */
  expired = 0;
  /** Fragmented datagrams forgotten, before their timeout, to make room. */
  fragmentsEvicted = 0;

  readonly maxEntries: number;
  readonly maxFragments: number;
  readonly timeouts: Readonly<ConnTrackTimeouts>;

  private readonly clock: () => number;
  /** The time of the call at hand, shared with the tables (see TupleTable). */
  private readonly nowCell = new Float64Array(1);
  private readonly flows: TupleTable;
  private readonly frags: TupleTable;
  /** Set by icmpKey: the packet is the reply of its query. */
  private kReply = false;

  constructor(options: ConnTrackerOptions) {
    const { maxEntries } = options;
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > CONNTRACK_MAX_ENTRIES) {
      throw new RangeError(`maxEntries must be an integer in 1..${CONNTRACK_MAX_ENTRIES}`);
    }
    const maxFragments = options.maxFragments ?? Math.min(maxEntries, DEFAULT_MAX_FRAGMENTS);
    if (
      !Number.isInteger(maxFragments) ||
      maxFragments < 1 ||
      maxFragments > CONNTRACK_MAX_ENTRIES
    ) {
      throw new RangeError(`maxFragments must be an integer in 1..${CONNTRACK_MAX_ENTRIES}`);
    }
    const timeouts = { ...DEFAULT_CONNTRACK_TIMEOUTS, ...options.timeouts };
    for (const [name, ms] of Object.entries(timeouts)) {
      if (typeof ms !== "number" || !(ms > 0) || !Number.isFinite(ms)) {
        throw new RangeError(`timeout ${name} must be a positive number of ms`);
      }
    }
    this.maxEntries = maxEntries;
    this.maxFragments = maxFragments;
    this.timeouts = Object.freeze(timeouts);
    this.clock = options.now ?? Date.now;
    const seed = (options.seed ?? randomBytes(4).readInt32LE(0)) | 0;
    this.flows = new TupleTable(maxEntries, seed, this.nowCell);
    this.frags = new TupleTable(
      maxFragments,
      Math.imul(seed, 0x2545f491) ^ 0x3c6ef372,
      this.nowCell,
    );
  }

  /** Flows tracked now (expired ones count until they are met or swept). */
  get entries(): number {
    return this.flows.size;
  }

  /** Fragmented datagrams remembered now. */
  get fragmentEntries(): number {
    return this.frags.size;
  }

  /**
   * What `pkt` (parsed by parseFrame) is: "established", "related", "new" or "invalid". A packet
   * that did not parse is "invalid". Advances the state of the flow it belongs to (TCP state,
   * reply seen, timeout) and marks the flow as recently used; never starts tracking a flow.
   */
  classify(pkt: ParsedPacket, now: number = this.clock()): Verdict {
    if (pkt.status !== PARSE_OK) return "invalid";
    this.nowCell[0] = now;
    this.reapOne();
    if (pkt.fragmentOffset !== 0) return this.classifyLaterFragment(pkt);
    const verdict = this.classifyWhole(pkt);
    if (pkt.moreFragments && (verdict === "established" || verdict === "related")) {
      this.rememberDatagram(pkt, verdict === "related" ? FRAG_RELATED : FRAG_ESTABLISHED);
    }
    return verdict;
  }

  /**
   * Starts tracking the flow of `pkt`, which `classify` called "new" and the policy allowed.
   * Returns whether the flow is tracked now; false for packets that cannot start a flow (a TCP
   * segment that is not a SYN, an ICMP reply or error, a later fragment, a packet that did not
   * parse). Committing a flow that is already tracked changes nothing.
   */
  commit(pkt: ParsedPacket, now: number = this.clock()): boolean {
    if (pkt.status !== PARSE_OK || pkt.fragmentOffset !== 0) return false;
    this.nowCell[0] = now;
    const t = this.timeouts;
    let initialState = 0;
    let timeout: number;
    switch (pkt.protocol) {
      case IPPROTO_TCP: {
        const f = pkt.tcpFlags & TCP_STATE_FLAGS;
        if (TCP_VALID[f] !== 1 || (f & TCP_MAIN_FLAGS) !== TCP_SYN) return false;
        initialState = SYN_SENT;
        timeout = t.tcpSynSent;
        break;
      }
      case IPPROTO_UDP:
      case IPPROTO_SCTP:
        timeout = t.udp;
        break;
      case IPPROTO_ICMP:
        if (pkt.isIcmpError || icmpRequestType(pkt.icmpType) !== pkt.icmpType) return false;
        timeout = t.icmp;
        break;
      default:
        timeout = t.generic;
    }
    const mode = this.keyOf(pkt);
    if (mode === KEY_NONE) return false;
    const flows = this.flows;
    if (this.findLive(mode) < 0) {
      if (flows.size >= this.maxEntries) this.evictFlow(); // leaves the key alone
      flows.setState(flows.insert(timeout), initialState);
    }
    if (pkt.moreFragments) this.rememberDatagram(pkt, FRAG_ESTABLISHED);
    return true;
  }

  /** Removes every expired flow and datagram now (O(entries)); returns how many flows went. */
  expire(now: number = this.clock()): number {
    this.nowCell[0] = now;
    let removed = 0;
    const flows = this.flows;
    for (let i = flows.head; i >= 0;) {
      const next = flows.next(i);
      if (flows.isExpired(i)) {
        flows.remove(i);
        removed++;
      }
      i = next;
    }
    this.expired += removed;
    const frags = this.frags;
    for (let i = frags.head; i >= 0;) {
      const next = frags.next(i);
      if (frags.isExpired(i)) frags.remove(i);
      i = next;
    }
    return removed;
  }

  /** Forgets every flow and datagram (e.g. when the policies change). Counters stay. */
  clear(): void {
    this.flows.clear();
    this.frags.clear();
  }

  /** The live flow `pkt` belongs to, if any (for tests and status; allocates). */
  inspect(pkt: ParsedPacket, now: number = this.clock()): ConnTrackEntry | undefined {
    if (pkt.status !== PARSE_OK || pkt.fragmentOffset !== 0 || pkt.isIcmpError) return undefined;
    this.nowCell[0] = now;
    const mode = this.keyOf(pkt);
    if (mode === KEY_NONE) return undefined;
    const slot = this.flows.find(mode === KEY_EITHER);
    if (slot < 0 || this.flows.isExpired(slot)) return undefined;
    return this.entryAt(slot);
  }

  /** Every tracked flow, least recently used first (for status; allocates). */
  *list(): IterableIterator<ConnTrackEntry> {
    const flows = this.flows;
    for (let i = flows.head; i >= 0; i = flows.next(i)) yield this.entryAt(i);
  }

  private entryAt(slot: number): ConnTrackEntry {
    const f = this.flows;
    const flags = f.flags(slot);
    const protocol = f.proto(slot);
    const replied = (flags & F_REPLIED) !== 0;
    return {
      protocol,
      src: f.src(slot),
      dst: f.dst(slot),
      srcPort: f.srcPort(slot),
      dstPort: f.dstPort(slot),
      state:
        protocol === IPPROTO_TCP
          ? TCP_STATE_NAMES[f.state(slot)]!
          : replied
            ? "REPLIED"
            : "UNREPLIED",
      replied,
      assured: (flags & F_ASSURED) !== 0,
      expiresAt: f.expiresAt(slot),
    };
  }

  /**
   * Puts the flow key of `pkt` into the flow table's key: KEY_EITHER for tuples matched in both
   * directions, KEY_EXACT for ICMP queries (kReply says whether the packet is the reply), or
   * KEY_NONE when the packet has no flow key (no ports, an ICMP type that is not a query).
   */
  private keyOf(pkt: ParsedPacket): number {
    const k = this.flows.key;
    const proto = pkt.protocol;
    k[K_PROTO] = proto;
    switch (proto) {
      case IPPROTO_TCP:
      case IPPROTO_UDP:
      case IPPROTO_SCTP:
        if (!pkt.hasPorts) return KEY_NONE;
        k[K_SRC] = pkt.src;
        k[K_DST] = pkt.dst;
        k[K_PORTS] = (pkt.srcPort << 16) | pkt.dstPort;
        return KEY_EITHER;
      case IPPROTO_ICMP: {
        const request = icmpRequestType(pkt.icmpType);
        if (request < 0 || pkt.icmpId < 0) return KEY_NONE;
        const reply = pkt.icmpType !== request;
        this.kReply = reply;
        // A query's key is its request's: (requester, id, queried host, request type).
        k[K_SRC] = reply ? pkt.dst : pkt.src;
        k[K_DST] = reply ? pkt.src : pkt.dst;
        k[K_PORTS] = (pkt.icmpId << 16) | request;
        return KEY_EXACT;
      }
      default:
        k[K_SRC] = pkt.src;
        k[K_DST] = pkt.dst;
        k[K_PORTS] = 0;
        return KEY_EITHER;
    }
  }

  /** Like keyOf, for the datagram quoted in an ICMP error. */
  private innerKeyOf(pkt: ParsedPacket): number {
    const k = this.flows.key;
    const proto = pkt.innerProtocol;
    k[K_PROTO] = proto;
    switch (proto) {
      case IPPROTO_TCP:
      case IPPROTO_UDP:
      case IPPROTO_SCTP:
        if (!pkt.innerHasPorts) return KEY_NONE;
        k[K_SRC] = pkt.innerSrc;
        k[K_DST] = pkt.innerDst;
        k[K_PORTS] = (pkt.innerSrcPort << 16) | pkt.innerDstPort;
        return KEY_EITHER;
      case IPPROTO_ICMP: {
        const request = icmpRequestType(pkt.innerIcmpType);
        if (request < 0 || pkt.innerIcmpId < 0) return KEY_NONE;
        const reply = pkt.innerIcmpType !== request;
        k[K_SRC] = reply ? pkt.innerDst : pkt.innerSrc;
        k[K_DST] = reply ? pkt.innerSrc : pkt.innerDst;
        k[K_PORTS] = (pkt.innerIcmpId << 16) | request;
        return KEY_EXACT;
      }
      default:
        k[K_SRC] = pkt.innerSrc;
        k[K_DST] = pkt.innerDst;
        k[K_PORTS] = 0;
        return KEY_EITHER;
    }
  }

  /** The slot of the flow table's key, or -1; an expired flow is removed (and counted). */
  private findLive(mode: number): number {
    const flows = this.flows;
    const slot = flows.find(mode === KEY_EITHER);
    if (slot < 0) return -1;
    if (flows.isExpired(slot)) {
      flows.remove(slot);
      this.expired++;
      return -1;
    }
    if (mode === KEY_EXACT) flows.lastReply = this.kReply;
    return slot;
  }

  private classifyWhole(pkt: ParsedPacket): Verdict {
    const t = this.timeouts;
    const flows = this.flows;
    switch (pkt.protocol) {
      case IPPROTO_TCP: {
        if (!pkt.hasPorts) return "invalid";
        const f = pkt.tcpFlags & TCP_STATE_FLAGS;
        if (TCP_VALID[f] !== 1) return "invalid";
        const slot = this.findLive(this.keyOf(pkt));
        if (slot < 0) return (f & TCP_MAIN_FLAGS) === TCP_SYN ? "new" : "invalid";
        return this.tcpStep(slot, flows.lastReply, f & TCP_MAIN_FLAGS);
      }
      case IPPROTO_UDP:
      case IPPROTO_SCTP: {
        if (!pkt.hasPorts) return "invalid";
        const slot = this.findLive(this.keyOf(pkt));
        if (slot < 0) return "new";
        if (flows.lastReply) flows.addFlags(slot, F_REPLIED | F_ASSURED);
        flows.refresh(slot, (flows.flags(slot) & F_REPLIED) !== 0 ? t.udpStream : t.udp);
        return "established";
      }
      case IPPROTO_ICMP: {
        if (pkt.isIcmpError) {
          // Related when it goes back to the sender of a packet of a tracked flow.
          if (pkt.innerSrc !== pkt.dst) return "invalid";
          const mode = this.innerKeyOf(pkt);
          if (mode === KEY_NONE) return "invalid";
          return this.findLive(mode) >= 0 ? "related" : "invalid";
        }
        const mode = this.keyOf(pkt);
        if (mode === KEY_NONE) return "invalid"; // neither a query, nor a reply, nor an error
        const slot = this.findLive(mode);
        if (slot < 0) return this.kReply ? "invalid" : "new";
        if (this.kReply) flows.addFlags(slot, F_REPLIED | F_ASSURED);
        flows.refresh(slot, t.icmp);
        return "established";
      }
      default: {
        const slot = this.findLive(this.keyOf(pkt));
        if (slot < 0) return "new";
        if (flows.lastReply) flows.addFlags(slot, F_REPLIED | F_ASSURED);
        flows.refresh(slot, t.generic);
        return "established";
      }
    }
  }

  /** Advances a TCP flow by one valid segment; `f` holds only FIN, SYN, RST and ACK. */
  private tcpStep(slot: number, reply: boolean, f: number): Verdict {
    const flows = this.flows;
    const state = flows.state(slot);
    if (state === TIME_WAIT || state === CLOSE) {
      if (f === TCP_SYN) {
        // The ports are being reused for a new connection, which the policy must judge.
        flows.remove(slot);
        return "new";
      }
      return "established"; // late packets of the old connection; the timeout runs on
    }
    if ((f & TCP_RST) !== 0) {
      flows.setState(slot, CLOSE);
      flows.refresh(slot, this.timeouts.tcpClose);
      return "established";
    }
    let next = state;
    switch (state) {
      case SYN_SENT:
        if (f === TCP_SYN) {
          if (reply) next = SYN_RECV; // simultaneous open
        } else if (f === (TCP_SYN | TCP_ACK) && reply) {
          next = SYN_RECV;
        } else {
          return "invalid";
        }
        if (reply) flows.addFlags(slot, F_REPLIED);
        break;
      case SYN_RECV:
        if ((f & TCP_SYN) !== 0) {
          // A retransmitted SYN or SYN-ACK, either way round after a simultaneous open.
          if (f === TCP_SYN || f === (TCP_SYN | TCP_ACK)) break;
          return "invalid";
        }
        // The handshake's ACK (possibly with a FIN already).
        next = ESTABLISHED;
        flows.addFlags(slot, F_ASSURED);
        if ((f & TCP_FIN) !== 0) next = this.tcpFin(slot, reply);
        break;
      default: {
        // ESTABLISHED, FIN_WAIT, LAST_ACK.
        if ((f & TCP_SYN) !== 0) {
          // A retransmitted SYN (whose SYN-ACK was lost) or SYN-ACK: let it through as Linux
          // does, without changing anything; other SYNs do not belong here.
          if ((f === TCP_SYN && !reply) || (f === (TCP_SYN | TCP_ACK) && reply)) {
            return "established";
          }
          return "invalid";
        }
        if ((f & TCP_FIN) !== 0) {
          next = this.tcpFin(slot, reply);
        } else if (state === LAST_ACK) {
          // The ACK of the second FIN comes from the side that closed first.
          const lastFinReply = (flows.flags(slot) & F_LAST_FIN_REPLY) !== 0;
          if (reply !== lastFinReply) next = TIME_WAIT;
        }
      }
    }
    flows.setState(slot, next);
    flows.refresh(slot, this.tcpTimeout(next));
    return "established";
  }

  /** Records a FIN from one side; returns the state that follows. */
  private tcpFin(slot: number, reply: boolean): number {
    const flows = this.flows;
    let flags = flows.flags(slot);
    const had = flags & (F_FIN_ORIG | F_FIN_REPLY);
    const mine = reply ? F_FIN_REPLY : F_FIN_ORIG;
    flags |= mine;
    if (had !== 0 && (had & mine) === 0) {
      // The second FIN.
      flags = reply ? flags | F_LAST_FIN_REPLY : flags & ~F_LAST_FIN_REPLY;
    }
    flows.setFlags(slot, flags);
    return (flags & (F_FIN_ORIG | F_FIN_REPLY)) === (F_FIN_ORIG | F_FIN_REPLY)
      ? LAST_ACK
      : FIN_WAIT;
  }

  private tcpTimeout(state: number): number {
    const t = this.timeouts;
    switch (state) {
      case SYN_SENT:
        return t.tcpSynSent;
      case SYN_RECV:
        return t.tcpSynRecv;
      case ESTABLISHED:
        return t.tcpEstablished;
      case FIN_WAIT:
        return t.tcpFinWait;
      case LAST_ACK:
        return t.tcpLastAck;
      case TIME_WAIT:
        return t.tcpTimeWait;
      default:
        return t.tcpClose;
    }
  }

  /** Puts the datagram of `pkt` (addresses, protocol, IP id) into the fragment table's key. */
  private datagramKey(pkt: ParsedPacket): void {
    const k = this.frags.key;
    k[K_SRC] = pkt.src;
    k[K_DST] = pkt.dst;
    k[K_PORTS] = pkt.ipId << 16;
    k[K_PROTO] = pkt.protocol;
  }

  /** A fragment after the first gets the verdict its datagram's first fragment got. */
  private classifyLaterFragment(pkt: ParsedPacket): Verdict {
    const frags = this.frags;
    this.datagramKey(pkt);
    const slot = frags.find(false);
    if (slot < 0) return "invalid";
    if (frags.isExpired(slot)) {
      frags.remove(slot);
      return "invalid";
    }
    return frags.state(slot) === FRAG_RELATED ? "related" : "established";
  }

  private rememberDatagram(pkt: ParsedPacket, verdict: number): void {
    const frags = this.frags;
    this.datagramKey(pkt);
    let slot = frags.find(false);
    if (slot >= 0) {
      frags.refresh(slot, this.timeouts.fragment);
    } else {
      if (frags.size >= this.maxFragments) {
        const oldest = frags.head;
        if (!frags.isExpired(oldest)) this.fragmentsEvicted++;
        frags.remove(oldest);
      }
      slot = frags.insert(this.timeouts.fragment);
    }
    frags.setState(slot, verdict);
  }

  /** Drops the least recently used flow and datagram if they have expired (O(1) upkeep). */
  private reapOne(): void {
    const flows = this.flows;
    const head = flows.head;
    if (head >= 0 && flows.isExpired(head)) {
      flows.remove(head);
      this.expired++;
    }
    const frags = this.frags;
    const fhead = frags.head;
    if (fhead >= 0 && frags.isExpired(fhead)) frags.remove(fhead);
  }

  /**
   * Makes room in the full flow table: among the least recently used few, an expired flow
   * goes first, else an unanswered one (so a flood of new flows mostly displaces itself), else
   * the least recently used.
   */
  private evictFlow(): void {
    const flows = this.flows;
    let unassured = -1;
    let i = flows.head;
    for (let n = 0; n < EVICTION_WINDOW && i >= 0; n++, i = flows.next(i)) {
      if (flows.isExpired(i)) {
        flows.remove(i);
        this.expired++;
        return;
      }
      if (unassured < 0 && (flows.flags(i) & F_ASSURED) === 0) unassured = i;
    }
    flows.remove(unassured >= 0 ? unassured : flows.head);
    this.evicted++;
  }
}
