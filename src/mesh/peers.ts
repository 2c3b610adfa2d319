/**
 * The peer table: every peer we know of, with the connection list it last gossiped, merged
 * exactly as Weave merges topology (spec 2.5.2), plus our own entry, which only we change.
 */

import { randomInt } from "node:crypto";
import type { PeerName } from "../wire/peer-name.js";
import {
  type ConnectionSummary,
  DEFAULT_MAX_CONNECTIONS_PER_PEER,
  DEFAULT_MAX_PEERS,
  type PeerSummary,
  SHORT_ID_LIMIT,
} from "../wire/topology.js";
import type { TopologyView } from "./routes.js";

const MAX_UINT64 = 2n ** 64n - 1n;
const MAX_PEER_NAME = 2 ** 48 - 1;

export interface PeersOptions {
  name: PeerName;
  nickname: string;
  /** Our incarnation: non-zero uint64. */
  uid: bigint;
  /** Our 12-bit short id; random if omitted. */
  shortId?: number;
  /** Most peers in the table, ourselves included (local connections may exceed it). Default 4096. */
  maxPeers?: number;
  /** Most connections kept for one remote peer; longer lists are rejected. Default 1024. */
  maxConnectionsPerPeer?: number;
  /** Uniform integer in [0, bound); defaults to crypto.randomInt. For tests. */
  randomInt?: (bound: number) => number;
}

/** A peer as the router learned it from a handshake (features map, spec 1.4). */
export interface PeerIntro {
  name: PeerName;
  nickname: string;
  uid: bigint;
  shortId?: number;
}

export interface ApplyResult {
  /** Peers whose entry changed (ourselves included when we must re-advertise): relay these. */
  improved: PeerName[];
  /** Peers new to the table, placeholders included. */
  added: PeerName[];
  /** Summaries left out because of the caps or invalid fields. */
  skipped: number;
}

export interface PeersStats {
  /** Summaries not applied because the table or a connection list was full, or fields were bad. */
  rejectedSummaries: number;
  /** Summaries about our own name that disagreed with us (stale incarnation or someone lying). */
  foreignSelfSummaries: number;
  /** Times we had to pick a new short id because a lower-named peer holds ours. */
  shortIdReassignments: number;
}

interface PeerRecord {
  name: PeerName;
  nickname: string;
  uid: bigint;
  version: bigint;
  shortId: number;
  hasShortId: boolean;
  connections: Map<PeerName, ConnectionSummary>;
}

function copyConnection(c: ConnectionSummary): ConnectionSummary {
  return {
    name: c.name,
    remoteTcpAddr: c.remoteTcpAddr,
    outbound: c.outbound,
    established: c.established,
  };
}

function summaryOf(p: PeerRecord): PeerSummary {
  return {
    name: p.name,
    nickname: p.nickname,
    uid: p.uid,
    version: p.version,
    shortId: p.shortId,
    hasShortId: p.hasShortId,
    connections: [...p.connections.values()].sort((a, b) => a.name - b.name).map(copyConnection),
  };
}

function connectionMap(conns: readonly ConnectionSummary[]): Map<PeerName, ConnectionSummary> {
  // One entry per remote peer; a repeated name keeps the last (as Weave's map does).
  return new Map(conns.map((c) => [c.name, copyConnection(c)]));
}

function sameConnections(
  a: ReadonlyMap<PeerName, ConnectionSummary>,
  b: ReadonlyMap<PeerName, ConnectionSummary>,
): boolean {
  if (a.size !== b.size) return false;
  for (const [name, x] of a) {
    const y = b.get(name);
    if (
      !y ||
      y.remoteTcpAddr !== x.remoteTcpAddr ||
      y.outbound !== x.outbound ||
      y.established !== x.established
    ) {
      return false;
    }
  }
  return true;
}

function isPeerName(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= MAX_PEER_NAME;
}

function isUint64(v: bigint): boolean {
  return typeof v === "bigint" && v >= 0n && v <= MAX_UINT64;
}

function isShortId(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < SHORT_ID_LIMIT;
}

/** Spec 2.5.2: does `incoming` replace `current`? */
export function supersedes(
  incoming: Pick<PeerSummary, "version" | "uid" | "hasShortId">,
  current: Pick<PeerSummary, "version" | "uid" | "hasShortId">,
): boolean {
  if (incoming.version !== current.version) return incoming.version > current.version;
  if (incoming.uid !== current.uid) return incoming.uid > current.uid;
  return incoming.hasShortId && !current.hasShortId;
}

/** A peer known only from others' connection lists (spec 2.5.2): UID 0, no short id. */
function placeholder(name: PeerName): PeerRecord {
  return {
    name,
    nickname: "",
    uid: 0n,
    version: 0n,
    shortId: 0,
    hasShortId: false,
    connections: new Map(),
  };
}

export class Peers {
  /** Our own name. */
  readonly self: PeerName;
  readonly maxPeers: number;
  readonly maxConnectionsPerPeer: number;
  readonly stats: PeersStats = {
    rejectedSummaries: 0,
    foreignSelfSummaries: 0,
    shortIdReassignments: 0,
  };

  private readonly byName = new Map<PeerName, PeerRecord>();
  /** short id → names of the peers that claim it (with `hasShortId`). */
  private readonly byShortId = new Map<number, Set<PeerName>>();
  /** Peers pinned by the router (connections being set up), with counts. */
  private readonly refs = new Map<PeerName, number>();
  private readonly ourself: PeerRecord;
  private readonly random: (bound: number) => number;

  constructor(options: PeersOptions) {
    if (!isPeerName(options.name)) throw new RangeError(`bad peer name ${options.name}`);
    if (!isUint64(options.uid) || options.uid === 0n) {
      throw new RangeError(`our UID must be a non-zero uint64, got ${options.uid}`);
    }
    if (options.shortId !== undefined && !isShortId(options.shortId)) {
      throw new RangeError(`short id ${options.shortId} is not a 12-bit number`);
    }
    this.random = options.randomInt ?? ((bound) => randomInt(bound));
    this.self = options.name;
    this.maxPeers = options.maxPeers ?? DEFAULT_MAX_PEERS;
    this.maxConnectionsPerPeer = options.maxConnectionsPerPeer ?? DEFAULT_MAX_CONNECTIONS_PER_PEER;
    this.ourself = {
      name: options.name,
      nickname: options.nickname,
      uid: options.uid,
      version: 1n,
      shortId: options.shortId ?? this.random(SHORT_ID_LIMIT),
      hasShortId: true,
      connections: new Map(),
    };
    this.byName.set(this.self, this.ourself);
    this.indexShortId(this.ourself);
  }

  // --- Queries

  get size(): number {
    return this.byName.size;
  }

  has(name: PeerName): boolean {
    return this.byName.has(name);
  }

  /** A copy of one peer's entry. */
  get(name: PeerName): PeerSummary | undefined {
    const p = this.byName.get(name);
    return p && summaryOf(p);
  }

  /** A copy of our own entry (what we gossip about ourselves). */
  get ourSummary(): PeerSummary {
    return summaryOf(this.ourself);
  }

  get version(): bigint {
    return this.ourself.version;
  }

  /** The peer that owns `shortId` (lowest name among claimants), e.g. to resolve a VXLAN VNI. */
  peerByShortId(shortId: number): PeerName | undefined {
    const holders = this.byShortId.get(shortId);
    if (!holders || holders.size === 0) return undefined;
    return Math.min(...holders);
  }

  /** All peers for status: ourselves first, then by name. */
  list(): PeerSummary[] {
    return this.sortedNames().map((n) => summaryOf(this.byName.get(n)!));
  }

  /** Summaries of every peer, placeholders included (as Weave gossips its whole table). */
  encodeFull(): PeerSummary[] {
    return this.list();
  }

  /** Summaries of the named peers that we know (unknown names are left out). */
  encodeSubset(names: Iterable<PeerName>): PeerSummary[] {
    const out: PeerSummary[] = [];
    for (const name of new Set(names)) {
      const p = this.byName.get(name);
      if (p) out.push(summaryOf(p));
    }
    return out;
  }

  /**
   * A snapshot of the connection graph for route computation (spec 6.3). In
   * "established-symmetric", A→B counts iff A's record of A→B is established and B's record of
   * B→A exists and is established; in "all", every connection A lists counts. Neighbours are in
   * name order.
   */
  topologyView(mode: "established-symmetric" | "all"): TopologyView {
    const adjacency = new Map<PeerName, PeerName[]>();
    for (const p of this.byName.values()) {
      const out: PeerName[] = [];
      for (const c of p.connections.values()) {
        if (mode === "established-symmetric") {
          if (!c.established) continue;
          const back = this.byName.get(c.name)?.connections.get(p.name);
          if (!back || !back.established) continue;
        }
        out.push(c.name);
      }
      out.sort((a, b) => a - b);
      adjacency.set(p.name, out);
    }
    return { neighbours: (peer) => adjacency.get(peer) ?? [] };
  }

  // --- Our own entry (the router's view of its connections)

  /**
   * Replaces our connection list (one entry per remote peer). Bumps our version iff anything
   * changed, including the established flag. Unknown remotes get placeholder entries. Returns
   * whether it changed.
   */
  setLocalConnections(conns: readonly ConnectionSummary[]): boolean {
    const next = connectionMap(conns.filter((c) => c.name !== this.self));
    if (sameConnections(next, this.ourself.connections)) return false;
    this.ourself.connections = next;
    for (const name of next.keys()) this.ensurePlaceholder(name);
    this.bumpOurVersion();
    return true;
  }

  /** Adds or replaces our connection to `conn.name`. Returns whether anything changed. */
  addLocalConnection(conn: ConnectionSummary): boolean {
    const next = new Map(this.ourself.connections);
    next.set(conn.name, conn);
    return this.setLocalConnections([...next.values()]);
  }

  /** Marks our connection to `name` established (or not). Returns whether anything changed. */
  setLocalEstablished(name: PeerName, established = true): boolean {
    const conn = this.ourself.connections.get(name);
    if (!conn) return false;
    return this.addLocalConnection({ ...conn, established });
  }

  /** Drops our connection to `name`. Returns whether it was there. */
  removeLocalConnection(name: PeerName): boolean {
    if (!this.ourself.connections.has(name)) return false;
    const next = new Map(this.ourself.connections);
    next.delete(name);
    return this.setLocalConnections([...next.values()]);
  }

  /**
   * Pins a peer the router is talking to (Weave's fetchWithDefault): adds it from its intro if
   * unknown (version 0, no connections), and keeps it from garbage collection until `release`.
   * Returns the table's entry, which may carry a different UID than the intro (the caller
   * decides what a mismatch means).
   */
  retain(intro: PeerIntro): PeerSummary {
    if (intro.name === this.self) throw new RangeError("cannot retain ourselves");
    if (!isPeerName(intro.name)) throw new RangeError(`bad peer name ${intro.name}`);
    let p = this.byName.get(intro.name);
    if (!p) {
      const hasShortId = intro.shortId !== undefined && isShortId(intro.shortId);
      p = {
        name: intro.name,
        nickname: intro.nickname,
        uid: isUint64(intro.uid) ? intro.uid : 0n,
        version: 0n,
        shortId: hasShortId ? intro.shortId! : 0,
        hasShortId,
        connections: new Map(),
      };
      this.byName.set(p.name, p);
      this.indexShortId(p);
      this.resolveOurShortId();
    }
    this.refs.set(intro.name, (this.refs.get(intro.name) ?? 0) + 1);
    return summaryOf(p);
  }

  release(name: PeerName): void {
    const n = this.refs.get(name);
    if (n === undefined) return;
    if (n <= 1) this.refs.delete(name);
    else this.refs.set(name, n - 1);
  }

  // --- Merging gossip

  /**
   * Merges received summaries (spec 2.5.2). New peers are adopted; a known peer is replaced iff
   * the summary `supersedes` it; names seen only in connection lists become placeholders (UID 0,
   * no short id). Our own entry is never replaced: a summary of our name with another UID or a
   * version at least ours makes us raise our version above it (and we count as improved, to be
   * re-advertised). Summaries that would take the table past `maxPeers`, list more than
   * `maxConnectionsPerPeer` connections, or carry out-of-range fields are skipped and counted.
   */
  applyUpdate(summaries: readonly PeerSummary[]): ApplyResult {
    const improved = new Set<PeerName>();
    const added: PeerName[] = [];
    let skipped = 0;

    // Pass 1: choose the summaries we can take, and the names they make us add (Weave adds
    // placeholders before merging, and a summary of a new name is adopted as that peer).
    const accepted: PeerSummary[] = [];
    const adopt = new Map<PeerName, PeerSummary | undefined>(); // undefined: placeholder
    for (const s of summaries) {
      if (s.name === this.self) {
        accepted.push(s);
        continue;
      }
      if (!this.validSummary(s)) {
        skipped++;
        continue;
      }
      const needed = new Set<PeerName>();
      if (!this.byName.has(s.name) && !adopt.has(s.name)) needed.add(s.name);
      for (const c of s.connections) {
        if (!this.byName.has(c.name) && !adopt.has(c.name)) needed.add(c.name);
      }
      if (this.byName.size + adopt.size + needed.size > this.maxPeers) {
        skipped++;
        continue;
      }
      for (const name of needed) adopt.set(name, undefined);
      // A new name is adopted from its first summary, even if an earlier list named it.
      if (!this.byName.has(s.name) && adopt.get(s.name) === undefined) adopt.set(s.name, s);
      accepted.push(s);
    }
    this.stats.rejectedSummaries += skipped;

    for (const [name, first] of adopt) {
      const p: PeerRecord = first ? this.recordFrom(first) : placeholder(name);
      this.byName.set(name, p);
      this.indexShortId(p);
      added.push(name);
      if (first) improved.add(name);
    }

    // Pass 2: merge in order (a summary adopted above is already in place).
    const adoptedFrom = new Set([...adopt.values()].filter((s) => s !== undefined));
    for (const s of accepted) {
      if (s.name === this.self) {
        if (this.considerSelfSummary(s)) improved.add(this.self);
        continue;
      }
      if (adoptedFrom.has(s)) continue;
      const p = this.byName.get(s.name)!;
      if (!supersedes(s, p)) continue;
      this.unindexShortId(p);
      p.nickname = s.nickname;
      p.uid = s.uid;
      p.version = s.version;
      p.shortId = s.shortId;
      p.hasShortId = s.hasShortId;
      p.connections = connectionMap(s.connections);
      this.indexShortId(p);
      improved.add(s.name);
    }

    if (this.resolveOurShortId()) improved.add(this.self);
    return { improved: [...improved], added, skipped };
  }

  /**
   * Removes the peers we cannot reach from ourselves over any gossiped connection (established
   * or not), except those on our own connection list or pinned by `retain`. Returns their names.
   */
  garbageCollect(): PeerName[] {
    const reached = new Set<PeerName>([this.self]);
    const queue: PeerName[] = [this.self];
    while (queue.length > 0) {
      const p = this.byName.get(queue.pop()!);
      if (!p) continue;
      for (const name of p.connections.keys()) {
        if (!reached.has(name) && this.byName.has(name)) {
          reached.add(name);
          queue.push(name);
        }
      }
    }
    const removed: PeerName[] = [];
    for (const [name, p] of this.byName) {
      if (reached.has(name) || this.refs.has(name)) continue;
      this.byName.delete(name);
      this.unindexShortId(p);
      removed.push(name);
    }
    return removed.sort((a, b) => a - b);
  }

  // --- Internals

  private sortedNames(): PeerName[] {
    const others = [...this.byName.keys()].filter((n) => n !== this.self).sort((a, b) => a - b);
    return [this.self, ...others];
  }

  private validSummary(s: PeerSummary): boolean {
    return (
      isPeerName(s.name) &&
      isUint64(s.uid) &&
      isUint64(s.version) &&
      isShortId(s.shortId) &&
      s.connections.length <= this.maxConnectionsPerPeer &&
      s.connections.every((c) => isPeerName(c.name))
    );
  }

  private recordFrom(s: PeerSummary): PeerRecord {
    return {
      name: s.name,
      nickname: s.nickname,
      uid: s.uid,
      version: s.version,
      shortId: s.shortId,
      hasShortId: s.hasShortId,
      connections: connectionMap(s.connections),
    };
  }

  private ensurePlaceholder(name: PeerName): void {
    if (this.byName.has(name)) return;
    this.byName.set(name, placeholder(name));
  }

  /**
   * A summary of our own name from someone else. Its contents never replace ours. Another UID
   * (an earlier incarnation, or an impostor) or a version at least ours (someone lying, or a
   * replay) means it could win elsewhere in the mesh: we move our version above it. Returns
   * whether we must re-advertise ourselves.
   */
  private considerSelfSummary(s: PeerSummary): boolean {
    const us = this.ourself;
    const sameAsOurs =
      s.uid === us.uid &&
      s.version === us.version &&
      s.nickname === us.nickname &&
      s.hasShortId === us.hasShortId &&
      (!s.hasShortId || s.shortId === us.shortId) &&
      sameConnections(connectionMap(s.connections), us.connections);
    if (sameAsOurs) return false; // our own summary echoed back
    if (s.uid === us.uid && s.version < us.version) return false; // merely stale
    this.stats.foreignSelfSummaries++;
    if (isUint64(s.version) && s.version >= us.version) {
      // At 2^64-1 we cannot go higher; Go would wrap to 0, which loses everywhere.
      us.version = s.version < MAX_UINT64 ? s.version + 1n : MAX_UINT64;
    }
    return true;
  }

  private bumpOurVersion(): void {
    if (this.ourself.version < MAX_UINT64) this.ourself.version++;
  }

  private indexShortId(p: PeerRecord): void {
    if (!p.hasShortId) return;
    let holders = this.byShortId.get(p.shortId);
    if (!holders) this.byShortId.set(p.shortId, (holders = new Set()));
    holders.add(p.name);
  }

  private unindexShortId(p: PeerRecord): void {
    if (!p.hasShortId) return;
    const holders = this.byShortId.get(p.shortId);
    holders?.delete(p.name);
    if (holders?.size === 0) this.byShortId.delete(p.shortId);
  }

  /**
   * Spec 1.5: if a peer with a lower name claims our short id, we take a random free one and
   * bump our version. With no free id left we keep ours (nothing better exists). Returns
   * whether our entry changed.
   */
  private resolveOurShortId(): boolean {
    const us = this.ourself;
    if (!us.hasShortId || this.peerByShortId(us.shortId) === this.self) return false;
    const free = this.pickFreeShortId();
    if (free === undefined) return false;
    this.unindexShortId(us);
    us.shortId = free;
    this.indexShortId(us);
    this.stats.shortIdReassignments++;
    this.bumpOurVersion();
    return true;
  }

  private pickFreeShortId(): number | undefined {
    for (let i = 0; i < 16; i++) {
      const id = this.random(SHORT_ID_LIMIT);
      if (!this.byShortId.has(id)) return id;
    }
    const start = this.random(SHORT_ID_LIMIT);
    for (let i = 0; i < SHORT_ID_LIMIT; i++) {
      const id = (start + i) % SHORT_ID_LIMIT;
      if (!this.byShortId.has(id)) return id;
    }
    return undefined;
  }
}
