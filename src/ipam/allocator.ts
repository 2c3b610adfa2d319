import { existsSync } from "node:fs";
import type { Logger } from "../util/log.js";
import { formatPeerName, parsePeerName, type PeerName } from "../wire/peer-name.js";
import type { GossipData, Gossiper } from "../mesh/gossip.js";
import type { IpamService, Subnet } from "../api/ipam-api.js";
import { formatAddress, parseAddress, rangesOverlap } from "./address.js";
import { ConsensusDriver, type IntervalScheduler } from "./consensus.js";
import { PaxosNode, PaxosObserver } from "./paxos.js";
import { Ring, RingError, donate } from "./ring.js";
import { Space } from "./space.js";
import {
  decodeGossipState,
  decodeIpamUnicast,
  encodeGossipState,
  encodeIpamUnicastMessage,
} from "./wire.js";
import { IpamUnicastKind, type Address, type GossipState, type Range } from "./types.js";

/** The channel IPAM gossips on (spec 8.2). */
export const IPAM_CHANNEL = "IPallocation";
/** Retries of pending requests (spec 8.8). */
export const ALLOCATOR_TICK_MS = 5000;
/** A claim whose owner we cannot reach fails after more attempts than this (spec 8.7.2). */
const MAX_UNREACHABLE_CLAIM_ATTEMPTS = 5;
/** How long a tracked endpoint may be gone before its addresses are released (spec 8.8). */
export const DEAD_ENDPOINT_GRACE_MS = 30_000;
/** The IPAM id prefix of an endpoint attached by `weft attach`: `netns:<namespace path>`. */
export const NETNS_ID_PREFIX = "netns:";

/**
 * Whether a tracked (check-alive) id's endpoint still exists: for `netns:<path>` ids, whether
 * the namespace file is still there (`ip netns del` removes it, a PID's goes with the process);
 * any other id is taken as alive (weft has no container runtime to ask).
 */
export function endpointAlive(id: string): boolean {
  return !id.startsWith(NETNS_ID_PREFIX) || existsSync(id.slice(NETNS_ID_PREFIX.length));
}

export type IpallocInit =
  | { mode: "consensus"; count?: number }
  | { mode: "seed"; peers: PeerName[] }
  | { mode: "observer" };

/** What the allocator needs of the mesh. */
export interface IpamTransport {
  /** Broadcasts our state (tag 6 from us). */
  broadcast(data: GossipData): void;
  /** Sends a unicast (tag 5); false when there is no route to `dst`. */
  unicast(dst: PeerName, payload: Uint8Array): boolean;
  /** True when `peer` is in the mesh's peer table. */
  knownPeer(peer: PeerName): boolean;
  /** Peer addresses given on the command line or by `weft connect` (for the quorum). */
  givenPeers(): number;
}

/** What survives a restart (spec 8.7.4). */
export interface IpamPersisted {
  peer: PeerName;
  universe: Range;
  ring: ReturnType<Ring["toData"]> | undefined;
  owned: { id: string; addrs: string[]; container: boolean }[];
}

export interface IpamStore {
  load(): IpamPersisted | undefined;
  save(state: IpamPersisted): void;
}

export interface AllocatorOptions {
  us: PeerName;
  uid: bigint;
  nickname: string;
  universe: Range;
  defaultSubnet: Subnet;
  init: IpallocInit;
  transport: IpamTransport;
  store?: IpamStore;
  log: Logger;
  now?: () => number;
  random?: () => number;
  scheduler?: IntervalScheduler;
  /** Liveness of a check-alive id (default: endpointAlive). */
  alive?: (id: string) => boolean;
}

interface Recorded {
  address: Address;
  prefix: number;
}

interface Pending {
  kind: "allocate" | "claim";
  id: string;
  subnet: Subnet;
  address?: Address;
  attempts: number;
  /** Track the id's namespace and release its addresses once it is gone (spec 8.7.3). */
  checkAlive: boolean;
  resolve(value: string): void;
  reject(err: Error): void;
  signal: AbortSignal;
}

/** The counters IPAM keeps (also in status). */
export interface IpamCounters {
  rejectedMessages: number;
  spaceRequestsSent: number;
  spaceDonated: number;
  spaceDenied: number;
}

/**
 * One peer's IP address manager, Weave's (spec 8): the ring, our space, the id → address
 * table, Paxos until the ring exists, and the messages of the `IPallocation` channel. It hands
 * out addresses only from ranges the ring says are ours; that is the whole safety argument.
 */
export class Allocator implements Gossiper, IpamService {
  readonly universe: Range;
  readonly counters: IpamCounters = {
    rejectedMessages: 0,
    spaceRequestsSent: 0,
    spaceDonated: 0,
    spaceDenied: 0,
  };
  private ring: Ring;
  private readonly space = new Space();
  private readonly table = new Map<string, { addrs: Recorded[]; container: boolean }>();
  private readonly nicknames = new Map<PeerName, string>();
  private readonly pending = new Set<Pending>();
  /** Tracked ids found gone, and when they were first found gone (spec 8.7.3). */
  private readonly dead = new Map<string, number>();
  private readonly primers = new Set<() => void>();
  private readonly consensus: ConsensusDriver | undefined;
  private readonly tickTimer: NodeJS.Timeout;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly alive: (id: string) => boolean;

  constructor(private readonly opts: AllocatorOptions) {
    this.universe = opts.universe;
    this.log = opts.log.child({ component: "ipam" });
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.alive = opts.alive ?? endpointAlive;
    this.ring = new Ring(opts.universe.start, opts.universe.end, opts.us);
    this.ring.setInUseCheck((range) => this.space.hasAllocationsIn(range));
    this.nicknames.set(opts.us, opts.nickname);
    const restored = this.restore();
    if (opts.init.mode !== "seed" || restored) {
      const participant =
        opts.init.mode === "observer"
          ? new PaxosObserver()
          : new PaxosNode({ name: opts.us, uid: opts.uid });
      this.consensus = new ConsensusDriver({
        participant,
        ...(opts.init.mode === "consensus" && opts.init.count !== undefined
          ? { initCount: opts.init.count }
          : {}),
        givenPeers: () => opts.transport.givenPeers(),
        broadcast: () => this.broadcastState(),
        createRing: (members) => this.createRing(members),
        ...(opts.scheduler ? { scheduler: opts.scheduler } : {}),
      });
      if (!this.ring.isEmpty()) this.consensus.ringEstablished();
    } else {
      this.consensus = undefined;
      this.createRing(opts.init.peers);
    }
    this.tickTimer = setInterval(() => this.tick(), ALLOCATOR_TICK_MS);
    this.tickTimer.unref();
  }

  /**
   * The 5 s tick (spec 8.8): retries pending requests and sweeps tracked endpoints that are
   * gone. Public so that tests can drive it with their own clock.
   */
  tick(): void {
    this.retryPending();
    this.sweepDead();
  }

  stop(): void {
    clearInterval(this.tickTimer);
    this.consensus?.stop();
    for (const p of [...this.pending]) p.reject(new Error("IPAM is shutting down"));
    this.pending.clear();
  }

  // ---------------------------------------------------------------------------------------
  // Gossiper (spec 8.2.2)

  onGossip(_src: PeerName, payload: Uint8Array): GossipData | undefined {
    this.receiveState(payload, undefined);
    return undefined; // tag 4 is never relayed
  }

  onBroadcast(src: PeerName, payload: Uint8Array): GossipData | undefined {
    // On success the relay carries our own current state, as Weave's does.
    return this.receiveState(payload, src) ? this.stateData() : undefined;
  }

  onUnicast(src: PeerName, payload: Uint8Array): void {
    let message;
    try {
      message = decodeIpamUnicast(payload);
    } catch (err) {
      this.reject(src, err);
      return;
    }
    switch (message.kind) {
      case IpamUnicastKind.SpaceRequest:
        this.donateTo(src, message.range);
        return;
      case IpamUnicastKind.RingUpdate:
        this.handleState(message.state, src);
        return;
      case IpamUnicastKind.SpaceRequestDenied:
        this.denied(src, message.range);
        return;
    }
  }

  fullState(): GossipData {
    return this.stateData();
  }

  // ---------------------------------------------------------------------------------------
  // IpamService (spec 8.7)

  allocate(
    id: string,
    subnet: Subnet | undefined,
    checkAlive: boolean,
    signal: AbortSignal,
  ): Promise<string> {
    const net = subnet ?? this.opts.defaultSubnet;
    const existing = this.addressesIn(id, net)[0];
    if (existing !== undefined) {
      this.dead.delete(id); // spec 8.7.1 step 1: a pending "gone" mark is cleared
      return Promise.resolve(cidrText(existing));
    }
    if (!rangesOverlap(net, this.universe)) {
      return Promise.reject(
        new Error(`range ${subnetText(net)} out of bounds: ${subnetText(this.universeSubnet())}`),
      );
    }
    this.consensus?.start();
    const got = this.tryAllocate(id, net, checkAlive);
    if (got !== undefined) return Promise.resolve(got);
    return this.wait({ kind: "allocate", id, subnet: net, attempts: 0, checkAlive, signal });
  }

  lookup(id: string, subnet: Subnet | undefined): string[] {
    return this.addressesIn(id, subnet ?? this.opts.defaultSubnet).map(cidrText);
  }

  claim(
    id: string,
    address: Address,
    prefix: number,
    noErrorOnUnknown: boolean,
    signal: AbortSignal,
    checkAlive = false,
  ): Promise<void> {
    const subnet = subnetOf(address, prefix);
    if (address < this.universe.start || address >= this.universe.end) {
      const holder = this.holderOf(address);
      if (holder !== undefined && holder !== id && id !== "_") {
        if (!this.dead.has(holder)) {
          return Promise.reject(
            new Error(`address ${formatAddress(address)} is already owned by ${holder}`),
          );
        }
        this.forget(holder, address); // a holder marked gone loses it (spec 8.7.2)
      }
      this.record(id, { address, prefix }, checkAlive);
      this.persist();
      return Promise.resolve();
    }
    this.consensus?.start();
    const outcome = this.tryClaim(id, address, prefix, checkAlive);
    if (outcome === true) return Promise.resolve();
    if (outcome instanceof Error) return Promise.reject(outcome);
    const waiting = this.wait({
      kind: "claim",
      id,
      subnet,
      address,
      attempts: 0,
      checkAlive,
      signal,
    });
    if (noErrorOnUnknown && this.ring.isEmpty()) {
      waiting.catch((err: Error) =>
        this.log.warn("background claim failed", { id, error: err.message }),
      );
      return Promise.resolve();
    }
    return waiting.then(() => undefined);
  }

  free(id: string, address: Address): void {
    const entry = this.table.get(id);
    const index = entry?.addrs.findIndex((a) => a.address === address) ?? -1;
    if (entry === undefined || index < 0) {
      throw new Error(`Delete: no address ${formatAddress(address)} for ${id}`);
    }
    this.forget(id, address);
    this.release1(address);
    this.changedLocally();
  }

  release(id: string): void {
    const entry = this.table.get(id);
    if (entry === undefined) throw new Error(`Delete: no addresses for ${id}`);
    this.table.delete(id);
    this.dead.delete(id);
    for (const a of entry.addrs) this.release1(a.address);
    this.changedLocally();
  }

  owned(): { containerid: string; addrs: string[] }[] {
    return [...this.table].map(([id, e]) => ({ containerid: id, addrs: e.addrs.map(cidrText) }));
  }

  defaultSubnet(): Subnet {
    return this.opts.defaultSubnet;
  }

  prime(signal: AbortSignal): Promise<void> {
    if (!this.ring.isEmpty()) return Promise.resolve();
    const waiting = new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.primers.delete(done);
        resolve();
      };
      this.primers.add(done);
      signal.addEventListener("abort", () => {
        this.primers.delete(done);
        reject(new Error("cancelled"));
      });
    });
    // Waiting first: starting may decide at once (quorum 1, or a quorum of accepts this peer
    // saw while idle) and make the ring before `start` returns.
    this.consensus?.start();
    return waiting;
  }

  reset(): void {
    for (const p of [...this.pending]) p.reject(new Error("IPAM is being reset"));
    const heir = this.chooseHeir();
    if (heir === undefined || this.ring.isEmpty()) {
      this.space.clear();
      return;
    }
    this.ring.handOver(heir);
    this.space.clear();
    this.persist();
    this.broadcastState();
    this.log.info("handed our ranges to an heir", { heir: formatPeerName(heir) });
  }

  rmpeer(nameOrNickname: string): string {
    const peer = this.resolvePeer(nameOrNickname);
    if (peer === this.opts.us) throw new Error("Cannot remove self");
    const gained = this.ring.rmpeer(peer);
    const count = gained.reduce((n, r) => n + (r.end - r.start), 0);
    if (gained.length > 0) {
      this.space.addFree(gained);
      this.ring.reportFree((r) => this.space.numFreeIn(r));
      this.persist();
      this.broadcastState();
      this.retryPending();
    }
    return `${count} IPs taken over from ${nameOrNickname}\n`;
  }

  // ---------------------------------------------------------------------------------------
  // Status

  status(): IpamStatus {
    const ranges = this.ring.allRanges();
    const byPeer = new Map<PeerName, { size: number; free: number }>();
    for (const r of ranges) {
      const e = byPeer.get(r.peer) ?? { size: 0, free: 0 };
      e.size += r.end - r.start;
      e.free += r.free;
      byPeer.set(r.peer, e);
    }
    const size = this.universe.end - this.universe.start;
    return {
      range: subnetText(this.universeSubnet()),
      defaultSubnet: subnetText(this.opts.defaultSubnet),
      state: this.ring.isEmpty() ? (this.consensus?.status() ?? "idle") : "ready",
      ourShare: byPeer.get(this.opts.us)?.size ?? 0,
      ourFree: this.space.numFree(),
      size,
      owners: [...byPeer].map(([peer, e]) => ({
        peer: formatPeerName(peer),
        nickname: this.nicknames.get(peer) ?? "",
        size: e.size,
        free: e.free,
        reachable: peer === this.opts.us || this.opts.transport.knownPeer(peer),
      })),
      allocations: [...this.table.values()].reduce((n, e) => n + e.addrs.length, 0),
      pending: this.pending.size,
    };
  }

  // ---------------------------------------------------------------------------------------
  // Internals

  private stateData(): GossipData {
    const data: GossipData = {
      merge: () => data,
      encode: () => [encodeGossipState(this.gossipState())],
    };
    return data;
  }

  private gossipState(): GossipState {
    const state: GossipState = {
      now: BigInt(Math.floor(this.now() / 1000)),
      nicknames: new Map(this.nicknames),
    };
    if (!this.ring.isEmpty()) {
      state.ring = this.ring.toData();
    } else {
      const paxos = this.consensus?.paxosState();
      if (paxos !== undefined) state.paxos = paxos;
    }
    return state;
  }

  private broadcastState(): void {
    this.opts.transport.broadcast(this.stateData());
  }

  /** Decodes and handles a state; false on any error (counted, logged, not relayed). */
  private receiveState(payload: Uint8Array, sender: PeerName | undefined): boolean {
    let state: GossipState;
    try {
      state = decodeGossipState(payload);
    } catch (err) {
      this.reject(sender, err);
      return false;
    }
    return this.handleState(state, sender);
  }

  private handleState(state: GossipState, sender: PeerName | undefined): boolean {
    for (const [peer, nick] of state.nicknames)
      if (peer !== this.opts.us) this.nicknames.set(peer, nick);
    if (state.ring !== undefined) {
      try {
        const result = this.ring.mergeReport(state.ring, {
          nickname: (p) => this.nicknames.get(p),
        });
        // `changed`, not Weave's `updated`: a re-versioning of our own tokens (V27 M7) must be
        // persisted and gossiped too.
        if (result.changed) {
          this.space.remove(result.lost);
          this.space.addFree(result.gained);
          this.ringChanged();
        }
      } catch (err) {
        if (!(err instanceof RingError)) throw err;
        this.reject(sender, err);
        return false;
      }
      return true;
    }
    if (!this.ring.isEmpty()) {
      if (sender !== undefined) this.sendRingUpdate(sender);
      return true;
    }
    if (state.paxos !== undefined) {
      try {
        this.consensus?.receivePaxos(state.paxos);
      } catch (err) {
        this.reject(sender, err);
        return false;
      }
      return true;
    }
    if (this.opts.init.mode !== "observer" && sender !== undefined) {
      this.consensus?.receiveRingRequest(true);
    }
    return true;
  }

  private reject(sender: PeerName | undefined, err: unknown): void {
    this.counters.rejectedMessages++;
    if (!(err instanceof Error)) throw err;
    this.log.warn("refused IPAM message", {
      from: sender === undefined ? "unknown" : formatPeerName(sender),
      error: err.message,
    });
  }

  private createRing(members: PeerName[]): void {
    if (!this.ring.isEmpty()) return;
    this.ring.claimForPeers(members);
    this.space.addFree(this.ring.ownedRanges());
    this.log.info("IPAM ring created", {
      members: members.map(formatPeerName).join(" "),
      ourShare: this.space.numFree(),
    });
    this.ringChanged(false);
    this.broadcastState();
  }

  /** After our ring changed by a merge, ring creation or rmpeer (spec 8.2.2 step 2). */
  private ringChanged(fromMerge = true): void {
    if (fromMerge) this.consensus?.ringEstablished();
    for (const peer of [...this.nicknames.keys()]) {
      if (peer === this.opts.us) continue;
      if (!this.ring.owners().includes(peer) && !this.opts.transport.knownPeer(peer)) {
        this.nicknames.delete(peer);
      }
    }
    this.persist();
    for (const primer of [...this.primers]) primer();
    this.retryPending();
  }

  private sendRingUpdate(dst: PeerName): void {
    this.opts.transport.unicast(
      dst,
      encodeIpamUnicastMessage({ kind: IpamUnicastKind.RingUpdate, state: this.gossipState() }),
    );
  }

  /** Spec 8.5.2: the donor side. */
  private donateTo(requester: PeerName, request: Range): void {
    if (this.ring.isEmpty()) return; // the asker retries
    const block = donate(this.ring, this.space, request, requester);
    if (block === undefined) {
      this.counters.spaceDenied++;
      this.opts.transport.unicast(
        requester,
        encodeIpamUnicastMessage({ kind: IpamUnicastKind.SpaceRequestDenied, range: request }),
      );
      this.sendRingUpdate(requester);
      return;
    }
    this.counters.spaceDonated += block.end - block.start;
    this.ring.reportFree((r) => this.space.numFreeIn(r));
    this.persist();
    this.log.info("gave address space", {
      to: formatPeerName(requester),
      range: `${formatAddress(block.start)}-${formatAddress(block.end - 1)}`,
    });
    this.broadcastState();
    this.sendRingUpdate(requester);
  }

  private denied(owner: PeerName, range: Range): void {
    for (const p of [...this.pending]) {
      if (p.kind !== "claim" || p.address === undefined) continue;
      if (p.address < range.start || p.address >= range.end) continue;
      p.reject(
        new Error(
          `address ${formatAddress(p.address)} is owned by other peer ${formatPeerName(owner)} (${this.nicknames.get(owner) ?? ""})`,
        ),
      );
    }
  }

  private tryAllocate(id: string, subnet: Subnet, checkAlive: boolean): string | undefined {
    if (this.ring.isEmpty()) return undefined;
    // Never the requested subnet's network or broadcast address (spec 8.7.1).
    const host = { start: subnet.start + 1, end: subnet.end - 1 };
    const address = this.space.allocate(host);
    if (address === undefined) return undefined;
    const recorded = { address, prefix: subnet.prefix };
    this.record(id === "_" ? formatAddress(address) : id, recorded, checkAlive);
    this.changedLocally();
    return cidrText(recorded);
  }

  /** true: done; an Error: refused; undefined: wait (ring empty or owner is another peer). */
  private tryClaim(
    id: string,
    address: Address,
    prefix: number,
    checkAlive: boolean,
  ): true | Error | undefined {
    if (this.ring.isEmpty()) return undefined;
    const owner = this.ring.owner(address);
    if (owner !== this.opts.us) return undefined;
    const holder = this.holderOf(address);
    const text = formatAddress(address);
    if (holder === undefined) {
      if (!this.space.claim(address)) return new Error(`Address ${text} is not free to claim`);
      this.record(id === "_" ? text : id, { address, prefix }, checkAlive);
      this.changedLocally();
      return true;
    }
    if (holder === id || (id === "_" && holder === text)) return true;
    if (holder === text) return new Error(`address ${text} already in use`);
    if (id === "_") return true;
    return new Error(`address ${text} is already owned by ${holder}`);
  }

  private wait(request: Omit<Pending, "resolve" | "reject">): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const pending: Pending = {
        ...request,
        resolve: (v) => {
          this.pending.delete(pending);
          resolve(v);
        },
        reject: (e) => {
          this.pending.delete(pending);
          reject(e);
        },
      };
      request.signal.addEventListener("abort", () => pending.reject(new Error("cancelled")));
      this.pending.add(pending);
      this.attempt(pending);
    });
  }

  /** One try of a pending request: locally, else ask a donor or the owner (spec 8.5.1). */
  private attempt(p: Pending): void {
    if (p.kind === "allocate") {
      const got = this.tryAllocate(p.id, p.subnet, p.checkAlive);
      if (got !== undefined) return p.resolve(got);
      if (!this.ring.isEmpty()) this.askForSpace(p.subnet);
      return;
    }
    const outcome = this.tryClaim(p.id, p.address!, p.subnet.prefix, p.checkAlive);
    if (outcome === true) return p.resolve("");
    if (outcome instanceof Error) return p.reject(outcome);
    if (this.ring.isEmpty()) return;
    const owner = this.ring.owner(p.address!);
    if (owner === undefined) return;
    p.attempts++;
    const sent = this.opts.transport.unicast(
      owner,
      encodeIpamUnicastMessage({
        kind: IpamUnicastKind.SpaceRequest,
        range: { start: p.address!, end: p.address! + 1 },
      }),
    );
    if (!sent && p.attempts > MAX_UNREACHABLE_CLAIM_ATTEMPTS) {
      p.reject(
        new Error(
          `address ${formatAddress(p.address!)} is owned by other peer ${formatPeerName(owner)} (${this.nicknames.get(owner) ?? ""}), which cannot be reached`,
        ),
      );
    }
  }

  private askForSpace(subnet: Subnet): void {
    const candidates = [...this.ring.donorCandidates(subnet)]
      .map(([peer, free]) => ({ peer, weight: free * this.random() }))
      .sort((a, b) => b.weight - a.weight);
    const payload = encodeIpamUnicastMessage({
      kind: IpamUnicastKind.SpaceRequest,
      range: { start: subnet.start, end: subnet.end },
    });
    for (const c of candidates) {
      if (this.opts.transport.unicast(c.peer, payload)) {
        this.counters.spaceRequestsSent++;
        return;
      }
    }
  }

  private retryPending(): void {
    for (const p of [...this.pending]) this.attempt(p);
  }

  private changedLocally(): void {
    // Free counts ride on the next gossip (spec 8.4.4): no broadcast of their own.
    this.ring.reportFree((r) => this.space.numFreeIn(r));
    this.persist();
  }

  private record(id: string, address: Recorded, container: boolean): void {
    const entry = this.table.get(id) ?? { addrs: [], container };
    this.dead.delete(id); // in use again
    if (!entry.addrs.some((a) => a.address === address.address)) entry.addrs.push(address);
    this.table.set(id, entry);
  }

  /** Drops one address from an id's record (the id goes when it has none left). */
  private forget(id: string, address: Address): void {
    const entry = this.table.get(id);
    if (entry === undefined) return;
    entry.addrs = entry.addrs.filter((a) => a.address !== address);
    if (entry.addrs.length === 0) {
      this.table.delete(id);
      this.dead.delete(id);
    }
  }

  /**
   * Spec 8.7.3 with weft's notion of a container: every id recorded with check-alive whose
   * endpoint is gone (see `alive`) is marked; one still gone after the grace (30 s) has all its
   * addresses released; one that came back is unmarked and keeps them.
   */
  private sweepDead(): void {
    const now = this.now();
    const released: string[] = [];
    for (const [id, entry] of this.table) {
      if (!entry.container) continue;
      let alive: boolean;
      try {
        alive = this.alive(id);
      } catch (err) {
        this.log.warn("cannot tell whether an endpoint is still there", {
          id,
          error: (err as Error).message,
        });
        continue;
      }
      const since = this.dead.get(id);
      if (alive) {
        if (since !== undefined) {
          this.dead.delete(id);
          this.log.info("endpoint is back; keeping its addresses", { id });
        }
      } else if (since === undefined) {
        this.dead.set(id, now);
        this.log.info("endpoint is gone; releasing its addresses unless it comes back", {
          id,
          graceSeconds: DEAD_ENDPOINT_GRACE_MS / 1000,
        });
      } else if (now - since >= DEAD_ENDPOINT_GRACE_MS) {
        released.push(id);
      }
    }
    for (const id of this.dead.keys()) if (!this.table.get(id)?.container) this.dead.delete(id);
    if (released.length === 0) return;
    for (const id of released) {
      const entry = this.table.get(id)!;
      this.table.delete(id);
      this.dead.delete(id);
      for (const a of entry.addrs) this.release1(a.address);
      this.log.info("released the addresses of an endpoint that is gone", {
        id,
        addresses: entry.addrs.map(cidrText).join(" "),
      });
    }
    this.changedLocally();
  }

  private release1(address: Address): void {
    if (this.space.owns(address)) this.space.free(address);
  }

  private holderOf(address: Address): string | undefined {
    for (const [id, e] of this.table) if (e.addrs.some((a) => a.address === address)) return id;
    return undefined;
  }

  private addressesIn(id: string, subnet: Subnet): Recorded[] {
    return (this.table.get(id)?.addrs ?? []).filter(
      (a) => a.address >= subnet.start && a.address < subnet.end,
    );
  }

  private chooseHeir(): PeerName | undefined {
    const others = this.ring.owners().filter((p) => p !== this.opts.us);
    return (
      others.find((p) => this.opts.transport.knownPeer(p)) ??
      [...this.nicknames.keys()].find(
        (p) => p !== this.opts.us && this.opts.transport.knownPeer(p),
      ) ??
      others[0] ??
      [...this.nicknames.keys()].find((p) => p !== this.opts.us)
    );
  }

  private resolvePeer(text: string): PeerName {
    for (const [peer, nick] of this.nicknames) if (nick === text) return peer;
    try {
      return parsePeerName(text);
    } catch {
      throw new Error(`unknown peer ${JSON.stringify(text)}`);
    }
  }

  private universeSubnet(): Subnet {
    return { ...this.universe, prefix: 32 - Math.log2(this.universe.end - this.universe.start) };
  }

  private persist(): void {
    const store = this.opts.store;
    if (store === undefined) return;
    store.save({
      peer: this.opts.us,
      universe: this.universe,
      ring: this.ring.isEmpty() ? undefined : this.ring.toData(),
      owned: [...this.table].map(([id, e]) => ({
        id,
        addrs: e.addrs.map(cidrText),
        container: e.container,
      })),
    });
  }

  /** Spec 8.7.4: the same name and universe, and a ring: restore ring, table and space. */
  private restore(): boolean {
    const saved = this.opts.store?.load();
    if (saved === undefined || saved.ring === undefined) return false;
    if (
      saved.peer !== this.opts.us ||
      saved.universe.start !== this.universe.start ||
      saved.universe.end !== this.universe.end
    ) {
      this.log.warn("discarding persisted IPAM data of another peer name or range");
      return false;
    }
    this.ring = Ring.fromData(saved.ring, this.opts.us);
    this.ring.setInUseCheck((range) => this.space.hasAllocationsIn(range));
    this.space.addFree(this.ring.ownedRanges());
    for (const entry of saved.owned) {
      for (const text of entry.addrs) {
        const [ip, len] = text.split("/");
        const recorded = { address: parseAddress(ip!), prefix: Number(len) };
        this.record(entry.id, recorded, entry.container);
        if (this.space.owns(recorded.address)) this.space.claim(recorded.address);
      }
    }
    this.log.info("restored IPAM state", {
      allocations: saved.owned.length,
      ourFree: this.space.numFree(),
    });
    return true;
  }
}

export interface IpamStatus {
  range: string;
  defaultSubnet: string;
  /** "ready", "idle", "awaiting consensus (quorum: Q, known: K)", "priming". */
  state: string;
  ourShare: number;
  ourFree: number;
  size: number;
  owners: { peer: string; nickname: string; size: number; free: number; reachable: boolean }[];
  allocations: number;
  pending: number;
}

function cidrText(a: Recorded): string {
  return `${formatAddress(a.address)}/${a.prefix}`;
}

function subnetText(s: Subnet): string {
  return `${formatAddress(s.start)}/${s.prefix}`;
}

function subnetOf(address: Address, prefix: number): Subnet {
  const size = 2 ** (32 - prefix);
  const start = Math.floor(address / size) * size;
  return { start, end: start + size, prefix };
}
