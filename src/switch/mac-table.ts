import type { Counters } from "../util/counters.js";
import type { LocalPort } from "./port.js";
import type { PeerName } from "../wire/peer-name.js";
import type { Mac } from "../wire/ethernet.js";

/** Weave's MAC cache timing (spec 6.1). */
export const MAC_MAX_AGE_MS = 10 * 60_000;
export const MAC_REFRESH_MS = MAC_MAX_AGE_MS / 10;
export const DEFAULT_MAC_TABLE_SIZE = 8192;

/** Where a MAC lives: a local port, or (port null) a remote peer. */
export interface MacEntry {
  port: LocalPort | null;
  peer: PeerName;
  seen: number;
}

/**
 * One network's MAC table: bounded, ageing, oldest-first eviction. The Map's insertion order
 * is the age order, because an entry is re-inserted whenever its timestamp is refreshed.
 */
export class MacTable {
  private readonly entries = new Map<Mac, MacEntry>();

  constructor(
    private readonly maxEntries: number,
    private readonly counters: Counters,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Binds `mac` to a local port or to a remote peer, moving it if it was elsewhere. */
  learn(mac: Mac, port: LocalPort | null, peer: PeerName, now: number): void {
    const entry = this.entries.get(mac);
    if (entry !== undefined) {
      if (entry.port === port && entry.peer === peer && now - entry.seen < MAC_REFRESH_MS) return;
      entry.port = port;
      entry.peer = peer;
      entry.seen = now;
      this.entries.delete(mac);
      this.entries.set(mac, entry);
      return;
    }
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
      this.counters.mac_evictions++;
    }
    this.entries.set(mac, { port, peer, seen: now });
  }

  lookup(mac: Mac, now: number): MacEntry | undefined {
    const entry = this.entries.get(mac);
    if (entry === undefined) return undefined;
    if (now - entry.seen > MAC_MAX_AGE_MS) {
      this.entries.delete(mac);
      return undefined;
    }
    return entry;
  }

  /** Drops expired entries; they are the oldest, so the walk stops at the first live one. */
  sweep(now: number): void {
    for (const [mac, entry] of this.entries) {
      if (now - entry.seen <= MAC_MAX_AGE_MS) break;
      this.entries.delete(mac);
    }
  }

  forgetPeer(peer: PeerName): void {
    for (const [mac, entry] of this.entries) {
      if (entry.port === null && entry.peer === peer) this.entries.delete(mac);
    }
  }

  forgetPort(port: LocalPort): void {
    for (const [mac, entry] of this.entries) {
      if (entry.port === port) this.entries.delete(mac);
    }
  }

  *list(): IterableIterator<[Mac, MacEntry]> {
    yield* this.entries;
  }
}
