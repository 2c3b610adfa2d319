/**
 * Weave's IPAM ring (spec 8.4, 8.5): the universe `[start, end)` closed into a circle and a
 * sorted list of tokens, each owning the addresses from its token up to the next one (the last
 * wraps to the first). Pure data and rules: no I/O, no timers. The allocator feeds it received
 * rings (`merge`), local events (`grantRangeToHost`, `reportFree`, `transfer`) and sends
 * `toData()`.
 *
 * Merging follows 8.4.5 exactly, with one deliberate difference where Weave 2.8 would crash (see
 * `mergeReport`): weft never accepts a ring that takes away an address it has in use.
 */
import { formatPeerName, type PeerName } from "../wire/peer-name.js";
import { chooseDonation, normalizeRanges, subtractRanges, type Space } from "./space.js";
import type { Address, Range, RingData, RingEntry } from "./types.js";

/** Received or persisted rings with more tokens (or seeds) than this are refused. */
export const MAX_RING_ENTRIES = 65536;
/** Version bump of a transfer (`rmpeer`, reset), 8.4.3 / 8.8. */
export const TRANSFER_VERSION_BUMP = 100;

const MAX_PEER_NAME = 2 ** 48 - 1;
const MAX_UINT32 = 2 ** 32 - 1;

/** `alloc(range)` of 8.4.5: do we have an address in use (not free in our space) in `range`? */
export type InUseCheck = (range: Range) => boolean;
export const NOTHING_IN_USE: InUseCheck = () => false;

export type RingErrorCode =
  /** 8.4.5 step 2 (Weave `ErrDifferentSeeds`). */
  | "different-seeds"
  /** 8.4.5 step 3 (Weave `ErrDifferentRange`). */
  | "different-range"
  /** Validity (8.4.1). */
  | "not-sorted"
  | "token-repeated"
  | "token-out-of-range"
  | "too-much-free"
  /** weft: more than MAX_RING_ENTRIES tokens or seeds, or a field that is not a valid number. */
  | "too-many-entries"
  | "invalid-field"
  /** 8.4.5 4c: theirs newer, ours owned by us, theirs someone else's, and we have addresses in use. */
  | "update-for-range-i-own"
  /** 8.4.5 4c: equal versions, different owners, ours owned by us, addresses in use. */
  | "inconsistent-entries"
  /** 8.4.5 4b and the leftover check: a foreign token splits a range we own. */
  | "peer-owns-my-range"
  /** weft only: the merge would take away a range in which we have addresses in use. */
  | "in-use-range-taken"
  /** 8.4.5 step 6: the merged result is invalid. */
  | "merge-causes";

/** A refused ring. `message` is Weave's text (8.2.2) as far as the spec shows it. */
export class RingError extends Error {
  override readonly name = "RingError";
  constructor(
    readonly code: RingErrorCode,
    message: string,
    /** Weave's ring-level text where the allocator logs a different one (V27 M2, M3). */
    readonly ringText: string = message,
  ) {
    super(message);
  }
}

export interface MergeOptions {
  /** 8.4.5 `alloc`; defaults to the ring's own check (see `setInUseCheck`). */
  inUse?: InUseCheck;
  /** Nicknames for the different-seeds text (`name(nick)`), as Weave annotates them. */
  nickname?: (peer: PeerName) => string | undefined;
}

export interface MergeResult {
  /** Weave's `updated`: an entry was taken from theirs. A pure re-versioning of our own tokens
   *  (V27 M7) changes our entries but reports false, as in Weave. */
  updated: boolean;
  /** Our ring differs from before in any way (entries, versions, free counts or seeds). */
  changed: boolean;
  /** Ranges we own now and did not before (the allocator adds them to its space as free). */
  gained: Range[];
  /** Ranges we owned before and no longer do; never contains an address in use. */
  lost: Range[];
}

/** One token's piece of the circle (a wrapping token yields two pieces). */
export interface TokenRange extends Range {
  token: Address;
  peer: PeerName;
  version: number;
  free: number;
}

/** Dotted quad of a uint32 address. */
function ip(a: Address): string {
  return `${(a >>> 24) & 255}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** `a.b.c.d/len` when the range is a CIDR block, else `first-last`. */
function rangeText(start: Address, end: Address): string {
  const size = end - start;
  let len = 32;
  for (let s = size; s > 1 && s % 2 === 0; s /= 2) len--;
  if (size > 0 && 2 ** (32 - len) === size && start % size === 0) return `${ip(start)}/${len}`;
  return `${ip(start)}-${ip(end - 1)}`;
}

const name = formatPeerName;
const copyEntry = (e: RingEntry): RingEntry => ({
  token: e.token,
  peer: e.peer,
  version: e.version,
  free: e.free,
});
const sameEntries = (a: readonly RingEntry[], b: readonly RingEntry[]): boolean =>
  a.length === b.length &&
  a.every((e, i) => {
    const f = b[i]!;
    return e.token === f.token && e.peer === f.peer && e.version === f.version && e.free === f.free;
  });
const bump = (version: number, by: number): number => (version + by) % 2 ** 32; // Go uint32

const isUint = (v: unknown, max: number): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;

export class Ring {
  #entries: RingEntry[] = [];
  #seeds: PeerName[] = [];
  #inUse: InUseCheck = NOTHING_IN_USE;

  /** An empty ring over the universe `[start, end)`, held by peer `us`. */
  constructor(
    readonly start: Address,
    readonly end: Address,
    readonly us: PeerName,
  ) {
    if (!isUint(start, MAX_UINT32) || !isUint(end, 2 ** 32) || end <= start) {
      throw new RangeError(`ring: invalid universe [${start}, ${end})`);
    }
  }

  /** A ring from persisted or received data; validated (8.4.1, entry bound). */
  static fromData(data: RingData, us: PeerName): Ring {
    checkShape(data);
    const ring = new Ring(data.start, data.end, us);
    ring.#check(data.entries);
    ring.#entries = data.entries.map(copyEntry);
    ring.#seeds = [...data.seeds];
    return ring;
  }

  /** The default `alloc` check used by `merge` (normally `r => space.hasAllocationsIn(r)`). */
  setInUseCheck(check: InUseCheck): void {
    this.#inUse = check;
  }

  toData(): RingData {
    return {
      start: this.start,
      end: this.end,
      peer: this.us,
      entries: this.#entries.map(copyEntry),
      seeds: [...this.#seeds],
    };
  }

  clone(): Ring {
    const copy = Ring.fromData(this.toData(), this.us);
    copy.#inUse = this.#inUse;
    return copy;
  }

  get seeds(): readonly PeerName[] {
    return this.#seeds;
  }

  /** Copies of the tokens in order. */
  entries(): RingEntry[] {
    return this.#entries.map(copyEntry);
  }

  isEmpty(): boolean {
    return this.#entries.length === 0;
  }

  /** `distance(a, b)` of 8.4.1: `distance(t, t)` is the whole universe. */
  distance(a: Address, b: Address): number {
    return b > a ? b - a : this.end - a + (b - this.start);
  }

  // -------------------------------------------------------------------------------------------
  // Creation (8.4.2)

  /**
   * The deterministic split of `[from, to)` for `peers` in the order given (Weave
   * `ClaimForPeers` before the allocator's sort): all versions 0, each `free` = its size.
   */
  static split(from: Address, to: Address, peers: readonly PeerName[]): RingEntry[] {
    const out: RingEntry[] = [];
    const go = (lo: Address, hi: Address, names: readonly PeerName[]): void => {
      const size = hi - lo;
      if (size <= 0 || names.length === 0) return;
      if (size === 1 || names.length === 1) {
        out.push({ token: lo, peer: names[0]!, version: 0, free: size });
        return;
      }
      const mid = lo + Math.floor(size / 2);
      const half = Math.floor(names.length / 2);
      go(lo, mid, names.slice(0, half));
      go(mid + (size % 2), hi, names.slice(half));
    };
    go(from, to, peers);
    return out;
  }

  /**
   * Creates the ring from a consensus value or a `seed=` list: sorted by numeric name and
   * de-duplicated, then split (8.4.2); `seeds` = that list. The ring must be empty.
   */
  claimForPeers(peers: readonly PeerName[]): void {
    if (!this.isEmpty()) throw new Error("ring: claimForPeers on a non-empty ring");
    const list = [...new Set(peers)].sort((a, b) => a - b);
    if (list.length > MAX_RING_ENTRIES) {
      throw new RingError("too-many-entries", `Too many peers (${list.length})`);
    }
    const entries = Ring.split(this.start, this.end, list);
    this.#check(entries);
    this.#entries = entries;
    this.#seeds = list;
  }

  // -------------------------------------------------------------------------------------------
  // Queries

  #indexOf(address: Address): number {
    // The token owning `address`: the last token ≤ address, or the last token (wrap).
    const es = this.#entries;
    let lo = 0;
    let hi = es.length - 1;
    let found = es.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (es[mid]!.token <= address) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  #nextToken(i: number): Address {
    const es = this.#entries;
    return es[(i + 1) % es.length]!.token;
  }

  /** The owner of an address; `undefined` for an empty ring or an address outside the universe. */
  owner(address: Address): PeerName | undefined {
    if (this.isEmpty() || address < this.start || address >= this.end) return undefined;
    return this.#entries[this.#indexOf(address)]!.peer;
  }

  /** Every token's piece(s) of the circle, in address order of the pieces' tokens. */
  allRanges(): TokenRange[] {
    const out: TokenRange[] = [];
    this.#entries.forEach((e, i) => {
      for (const r of this.#circle(e.token, this.#nextToken(i))) {
        out.push({ ...r, token: e.token, peer: e.peer, version: e.version, free: e.free });
      }
    });
    return out;
  }

  /** The pieces of the tokens owned by `peer`. */
  rangesOf(peer: PeerName): TokenRange[] {
    return this.allRanges().filter((r) => r.peer === peer);
  }

  /** The addresses owned by `peer` (default: us), as sorted, joined, non-wrapping ranges. */
  ownedRanges(peer: PeerName = this.us): Range[] {
    return normalizeRanges(this.#piecesOf(this.#entries, peer));
  }

  /** Sum of the `free` hints of `peer`'s tokens. */
  freeOf(peer: PeerName): number {
    let n = 0;
    for (const e of this.#entries) if (e.peer === peer) n += e.free;
    return n;
  }

  /** Distinct owners in ring order. */
  owners(): PeerName[] {
    return [...new Set(this.#entries.map((e) => e.peer))];
  }

  /**
   * 8.5.1 donor candidates for a request in `subnet`: owner → sum of the `free` of its tokens
   * that reach into the subnet (whole token `free`), skipping ours and `free = 0`. Insertion
   * order = ring order.
   */
  donorCandidates(subnet: Range): Map<PeerName, number> {
    const out = new Map<PeerName, number>();
    const es = this.#entries;
    for (let i = 0; i < es.length; i++) {
      const e = es[i]!;
      const next = es[i + 1];
      if (next !== undefined && next.token - 1 < subnet.start) continue;
      if (e.token >= subnet.end) break;
      if (e.free === 0 || e.peer === this.us) continue;
      out.set(e.peer, (out.get(e.peer) ?? 0) + e.free);
    }
    return out;
  }

  /**
   * 8.5.3 heir for `weave reset`: the first other owner in ring order that is in the mesh peer
   * table; else such a peer from the nickname map; else the first other owner; else any other
   * nickname. `undefined` = nobody (the hand-over then stays local).
   */
  chooseHeir(
    inPeerTable: (peer: PeerName) => boolean,
    nicknamePeers: Iterable<PeerName>,
  ): PeerName | undefined {
    const others = this.owners().filter((p) => p !== this.us);
    const nicks = [...nicknamePeers].filter((p) => p !== this.us);
    return (
      others.find(inPeerTable) ?? nicks.find(inPeerTable) ?? others[0] ?? nicks[0] ?? undefined
    );
  }

  // -------------------------------------------------------------------------------------------
  // Local changes (8.4.3)

  /**
   * Grants `[start, end)` (inside ranges we own, not wrapping; `end` may be the universe end)
   * to `peer` (8.4.3 "Grant"): +1 on every token changed, new tokens at version 0. V21.
   */
  grantRangeToHost(start: Address, end: Address, peer: PeerName): void {
    if (!(start >= this.start && end <= this.end && start < end)) {
      throw new RangeError(`ring: grant of [${ip(start)}, ${ip(end)}) outside the universe`);
    }
    if (this.isEmpty()) throw new Error("ring: grant on an empty ring");
    // Precondition: every address of [start, end) is ours.
    const mine = this.ownedRanges();
    if (subtractRanges([{ start, end }], mine).length > 0) {
      throw new Error(`ring: grant of ${rangeText(start, end)}, which is not all ours`);
    }
    const es = this.#entries.map(copyEntry);
    const at = (token: Address): number => es.findIndex((e) => e.token === token);
    const dist = (a: Address, b: Address): number => this.distance(a, b);
    const nextOf = (k: number): Address => es[(k + 1) % es.length]!.token;
    /** Where a new token goes to keep `es` sorted. */
    const slot = (token: Address): number => {
      const k = es.findIndex((e) => e.token > token);
      return k < 0 ? es.length : k;
    };

    let i = at(start);
    if (i >= 0) {
      const e = es[i]!;
      e.peer = peer;
      e.version = bump(e.version, 1);
      e.free = Math.min(dist(e.token, nextOf(i)), end - start);
    } else {
      // The token before `start` (ours, by the precondition; the last token when `start` lies
      // in its wrap-around piece) shrinks to end at `start`.
      i = slot(start);
      const prev = es[(i + es.length - 1) % es.length]!;
      prev.version = bump(prev.version, 1);
      prev.free = dist(prev.token, start);
      es.splice(i, 0, { token: start, peer, version: 0, free: 0 });
      es[i]!.free = Math.min(dist(start, nextOf(i)), end - start);
    }
    // Further tokens of ours inside (start, end).
    for (let j = i + 1; j < es.length && es[j]!.token < end; j++) {
      const e = es[j]!;
      e.peer = peer;
      e.version = bump(e.version, 1);
      e.free = Math.min(e.free, dist(e.token, end));
    }
    // Keep what follows `end` unless a token already sits there (`end` = universe end is read
    // as the universe start).
    const after = end === this.end ? this.start : end;
    if (at(after) < 0) {
      const k = slot(after);
      es.splice(k, 0, { token: after, peer: this.us, version: 0, free: 0 });
      es[k]!.free = dist(after, nextOf(k));
    }
    this.#check(es);
    this.#entries = es;
  }

  /** Index of the last token ≤ address in `es` (or the last token: wrap). */
  #indexIn(es: readonly RingEntry[], address: Address): number {
    let found = es.length - 1;
    for (let k = 0; k < es.length && es[k]!.token <= address; k++) found = k;
    return found;
  }

  /**
   * 8.4.3 "Report free counts": for each of our tokens, the free addresses of its range(s)
   * (`countFree` is asked per non-wrapping piece; a range wrapping the origin counts into its
   * token); tokens whose `free` differs get it and version+1. Returns whether anything changed.
   */
  reportFree(countFree: (range: Range) => number): boolean {
    const es = this.#entries.map(copyEntry);
    let changed = false;
    es.forEach((e, i) => {
      if (e.peer !== this.us) return;
      let free = 0;
      for (const r of this.#circle(e.token, this.#nextToken(i))) free += countFree(r);
      if (free !== e.free) {
        e.free = free;
        e.version = bump(e.version, 1);
        changed = true;
      }
    });
    if (!changed) return false;
    this.#check(es);
    this.#entries = es;
    return true;
  }

  /**
   * 8.4.3 "Transfer from X to Y": every token of `from` gets owner `to` and version+100.
   * Returns the ranges moved (joined, non-wrapping).
   */
  transfer(from: PeerName, to: PeerName): Range[] {
    const moved = this.ownedRanges(from);
    if (from === to) return [];
    for (const e of this.#entries) {
      if (e.peer === from) {
        e.peer = to;
        e.version = bump(e.version, TRANSFER_VERSION_BUMP);
      }
    }
    return moved;
  }

  /**
   * `weave rmpeer` (8.5.3): hands a dead peer's tokens to `heir` (default: us), +100. Refuses
   * our own name. Returns the ranges taken over (the allocator adds them to its space when the
   * heir is us, answers `<n> IPs taken over from <id>` with n = their size, and broadcasts when
   * non-empty).
   */
  rmpeer(peer: PeerName, heir: PeerName = this.us): Range[] {
    if (peer === this.us) throw new Error("Cannot remove self");
    return this.transfer(peer, heir);
  }

  /** `weave reset` (8.5.3): all our tokens to `heir`, +100. Returns the ranges handed over. */
  handOver(heir: PeerName): Range[] {
    if (heir === this.us) throw new Error("ring: cannot hand our ranges to ourselves");
    return this.transfer(this.us, heir);
  }

  // -------------------------------------------------------------------------------------------
  // Merge (8.4.5)

  /** Merges a received ring; returns Weave's `updated`. Throws RingError, leaving us untouched. */
  merge(received: RingData, options: MergeOptions = {}): boolean {
    return this.mergeReport(received, options).updated;
  }

  /**
   * 8.4.5, validate first, then apply. Weave's texts on error; our ring untouched on error.
   *
   * Where Weave 2.8 would exit (V27 M8/M9, 8.2.2 third hazard): Weave's merge can accept a ring
   * that takes part of our range away — by "repairing" our token when we have nothing in use in
   * it (M8), or by inserting a foreign token before the first token we keep, which 4b never
   * checks (M9) — and the weaver then dies on its ring/space consistency assertion. weft runs
   * Weave's walk unchanged and then checks what we would lose:
   *   - if any lost address is in use (`inUse`), the whole ring is refused with a RingError
   *     (`in-use-range-taken`, Weave's "Peer X says it owns the IP range from Y, which I think
   *     I own" text), so no container address can ever be owned by two peers;
   *   - otherwise the merge is accepted exactly as Weave's ring code would, and the lost
   *     ranges are reported in `lost` so the allocator removes them from its (all-free) space
   *     instead of asserting.
   */
  mergeReport(received: RingData, options: MergeOptions = {}): MergeResult {
    const inUse = options.inUse ?? this.#inUse;
    // 1. theirs valid.
    checkShape(received);
    if (received.start === this.start && received.end === this.end) {
      this.#check(received.entries);
    } else {
      // Weave checks validity against the received ring's own bounds before comparing them.
      const other = new Ring(received.start, received.end, this.us);
      other.#check(received.entries);
    }
    // 2. seeds.
    const theirSeeds = received.seeds;
    const ourSeeds = this.#seeds;
    if (
      theirSeeds.length > 0 &&
      ourSeeds.length > 0 &&
      (theirSeeds.length !== ourSeeds.length || theirSeeds.some((s, i) => s !== ourSeeds[i]))
    ) {
      const show = (list: readonly PeerName[]): string =>
        `[${list
          .map((p) => {
            const nick = options.nickname?.(p);
            return nick === undefined ? name(p) : `${name(p)}(${nick})`;
          })
          .join(" ")}]`;
      throw new RingError(
        "different-seeds",
        `IP allocation was seeded by different peers (received: ${show(theirSeeds)}, ours: ${show(ourSeeds)})`,
        "Received ring was seeded differently from ours",
      );
    }
    // 3. range.
    if (received.start !== this.start || received.end !== this.end) {
      throw new RingError(
        "different-range",
        `Incompatible IP allocation ranges (received: ${rangeText(received.start, received.end)}, ours: ${rangeText(this.start, this.end)})`,
        "Received range differs from ours",
      );
    }

    // 4. the walk.
    const ours = this.#entries;
    const theirs = received.entries;
    const us = this.us;
    const alloc = (a: Address, b: Address): boolean => this.#circle(a, b).some((r) => inUse(r));
    const ourFollowing = (i: number): Address => ours[(i + 1) % ours.length]!.token;
    const result: RingEntry[] = [];
    let updated = false;
    let prevOwner: PeerName | undefined;
    let i = 0;
    let j = 0;
    const keepOurs = (e: RingEntry): void => {
      result.push(copyEntry(e));
      prevOwner = e.peer;
    };
    const takeTheirs = (e: RingEntry): void => {
      result.push(copyEntry(e));
      prevOwner = undefined;
      updated = true;
    };
    while (i < ours.length && j < theirs.length) {
      const mine = ours[i]!;
      const their = theirs[j]!;
      if (mine.token < their.token) {
        // a.
        keepOurs(mine);
        i++;
      } else if (their.token < mine.token) {
        // b.
        if (prevOwner === us && their.peer !== us && alloc(their.token, mine.token)) {
          throw peerOwnsMyRange(their);
        }
        takeTheirs(their);
        j++;
      } else {
        // c.
        if (mine.version > their.version) {
          keepOurs(mine);
        } else if (mine.version === their.version) {
          if (mine.peer === their.peer) {
            keepOurs(mine);
          } else {
            if (mine.peer === us && alloc(mine.token, ourFollowing(i))) {
              throw new RingError(
                "inconsistent-entries",
                `Inconsistent entries for ${ip(mine.token)}: owned by ${name(mine.peer)} but incoming message says ${name(their.peer)}`,
              );
            }
            if (their.free > mine.free) takeTheirs(their);
            else keepOurs(mine);
          }
        } else if (mine.peer !== us) {
          takeTheirs(their);
        } else if (their.peer === us) {
          // A stale copy of our own token: out-vote it; neither `updated` nor `prevOwner`.
          result.push({ ...copyEntry(mine), version: bump(their.version, 1) });
        } else if (!alloc(mine.token, ourFollowing(i))) {
          // Weave logs "repair inconsistent data by accepting token ..." here.
          takeTheirs(their);
        } else {
          throw new RingError(
            "update-for-range-i-own",
            `Received update for IP range I own at ${ip(mine.token)} v${mine.version}: incoming message says owner ${name(their.peer)} v${their.version}`,
          );
        }
        i++;
        j++;
      }
    }
    for (; i < ours.length; i++) result.push(copyEntry(ours[i]!));
    if (j < theirs.length) {
      const first = theirs[j]!;
      if (prevOwner === us && first.peer !== us) throw peerOwnsMyRange(first);
      for (; j < theirs.length; j++) {
        result.push(copyEntry(theirs[j]!));
        updated = true;
      }
    }

    // 5. clamp our free counts.
    result.forEach((e, k) => {
      if (e.peer !== us) return;
      const d = this.distance(e.token, result[(k + 1) % result.length]!.token);
      if (e.free > d) e.free = d;
    });
    // 6. result valid.
    try {
      this.#check(result);
    } catch (err) {
      const text = `Merge of incoming data causes: ${(err as Error).message}`;
      throw new RingError("merge-causes", text);
    }

    // weft: never lose an address in use (see above).
    const before = this.ownedRanges();
    const after = normalizeRanges(this.#piecesOf(result, us));
    const lost = subtractRanges(before, after);
    for (const r of lost) {
      if (inUse(r)) {
        const taker = result[this.#indexIn(result, r.start)]!;
        throw peerOwnsMyRange({ ...taker, token: r.start }, "in-use-range-taken");
      }
    }
    const gained = subtractRanges(after, before);

    // 7. apply.
    const changed =
      !sameEntries(this.#entries, result) ||
      (this.#seeds.length === 0 && received.seeds.length > 0);
    if (this.#seeds.length === 0) this.#seeds = [...received.seeds];
    this.#entries = result;
    return { updated, changed, gained, lost };
  }

  // -------------------------------------------------------------------------------------------
  // Validity (8.4.1)

  /** Checks our own entries; throws RingError. */
  checkInvariants(): void {
    this.#check(this.#entries);
  }

  #check(entries: readonly RingEntry[]): void {
    if (entries.length > MAX_RING_ENTRIES) {
      throw new RingError(
        "too-many-entries",
        `Ring has too many entries (${entries.length} > ${MAX_RING_ENTRIES})`,
      );
    }
    for (const e of entries) {
      if (
        !isUint(e.token, MAX_UINT32) ||
        !isUint(e.peer, MAX_PEER_NAME) ||
        !isUint(e.version, MAX_UINT32) ||
        !isUint(e.free, MAX_UINT32)
      ) {
        throw new RingError("invalid-field", "Ring entry has an invalid field");
      }
    }
    for (let k = 1; k < entries.length; k++) {
      const a = entries[k - 1]!.token;
      const b = entries[k]!.token;
      if (b < a) throw new RingError("not-sorted", "Ring not sorted");
      if (b === a) throw new RingError("token-repeated", "Token appears twice in ring");
    }
    if (entries.length === 0) return;
    if (entries[0]!.token < this.start || entries[entries.length - 1]!.token >= this.end) {
      throw new RingError("token-out-of-range", "Token is out of range");
    }
    entries.forEach((e, k) => {
      const next = entries[(k + 1) % entries.length]!.token;
      const d = this.distance(e.token, next);
      if (e.free > d) {
        throw new RingError(
          "too-much-free",
          `Entry ${ip(e.token)}-${ip(next)} reporting too much free space: ${e.free} > ${d}`,
        );
      }
    });
  }

  /** `[a, b)` on the circle as non-wrapping ranges (`b ≤ a` wraps; `a = b` is everything). */
  #circle(a: Address, b: Address): Range[] {
    if (b > a) return [{ start: a, end: b }];
    const out: Range[] = [{ start: a, end: this.end }];
    if (b > this.start) out.push({ start: this.start, end: b });
    return out;
  }

  #piecesOf(es: readonly RingEntry[], peer: PeerName): Range[] {
    const out: Range[] = [];
    es.forEach((e, k) => {
      if (e.peer === peer) out.push(...this.#circle(e.token, es[(k + 1) % es.length]!.token));
    });
    return out;
  }
}

function peerOwnsMyRange(e: RingEntry, code: RingErrorCode = "peer-owns-my-range"): RingError {
  return new RingError(
    code,
    `Peer ${name(e.peer)} says it owns the IP range from ${ip(e.token)}, which I think I own`,
  );
}

/** Structural bounds of a RingData before anything else looks at it. */
function checkShape(data: RingData): void {
  if (!Array.isArray(data.entries) || !Array.isArray(data.seeds)) {
    throw new RingError("invalid-field", "Ring data is malformed");
  }
  if (data.entries.length > MAX_RING_ENTRIES || data.seeds.length > MAX_RING_ENTRIES) {
    throw new RingError(
      "too-many-entries",
      `Ring has too many entries (${Math.max(data.entries.length, data.seeds.length)} > ${MAX_RING_ENTRIES})`,
    );
  }
  if (!isUint(data.start, MAX_UINT32) || !isUint(data.end, 2 ** 32) || data.end <= data.start) {
    throw new RingError("invalid-field", "Ring data has an invalid range");
  }
  if (!data.seeds.every((s) => isUint(s, MAX_PEER_NAME))) {
    throw new RingError("invalid-field", "Ring data has an invalid seed");
  }
}

/**
 * 8.5.2 donor side, steps 1–4 up to the broadcast: choose the block from our space for a
 * request `[request.start, request.end)`, remove it from the space and grant it to `requester`
 * in the ring. `undefined` = nothing free there (the allocator sends kind 2, then kind 1).
 * The free-count report is the allocator's next step (the reply carries the ring before it,
 * V30 #6 vs #7).
 */
export function donate(
  ring: Ring,
  space: Space,
  request: Range,
  requester: PeerName,
): Range | undefined {
  if (ring.isEmpty()) return undefined;
  const block = chooseDonation(space.freeRanges(), request);
  if (block === undefined) return undefined;
  ring.grantRangeToHost(block.start, block.end, requester);
  space.remove([block]);
  return block;
}
