/**
 * A peer's private record of the addresses it owns and which of them are free (spec 8, "Space"),
 * and the donor's block choice of 8.5.2. Nothing here goes on the wire; the ring (ring.ts) says
 * which ranges a peer owns, the space says what it did with them. The allocator keeps the two
 * consistent: the space's owned ranges are exactly the ring's ranges of this peer.
 *
 * Held as sorted, disjoint, non-adjacent interval lists (never one entry per address), so a /8
 * universe costs as little as a /30.
 */
import type { Address, Range } from "./types.js";

// ---------------------------------------------------------------------------------------------
// Interval algebra on sorted lists of half-open ranges (shared with ring.ts).

/** Sorts, drops empty ranges, and joins overlapping or touching ones. */
export function normalizeRanges(ranges: readonly Range[]): Range[] {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.start <= last.end) {
      if (r.end > last.end) last.end = r.end;
    } else {
      out.push({ start: r.start, end: r.end });
    }
  }
  return out;
}

/** `a − b`, both normalized; the result is normalized. */
export function subtractRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  let j = 0;
  for (const r of a) {
    let start = r.start;
    while (j < b.length && b[j]!.end <= start) j++;
    let k = j;
    while (k < b.length && b[k]!.start < r.end) {
      const cut = b[k]!;
      if (cut.start > start) out.push({ start, end: cut.start });
      start = Math.max(start, cut.end);
      if (start >= r.end) break;
      k++;
    }
    if (start < r.end) out.push({ start, end: r.end });
  }
  return out;
}

/** `a ∩ b`, both normalized; the result is normalized. */
export function intersectRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const start = Math.max(x.start, y.start);
    const end = Math.min(x.end, y.end);
    if (start < end) out.push({ start, end });
    if (x.end < y.end) i++;
    else j++;
  }
  return out;
}

/** Total number of addresses in a list of disjoint ranges. */
export function rangesSize(ranges: readonly Range[]): number {
  let n = 0;
  for (const r of ranges) n += r.end - r.start;
  return n;
}

export function rangesEqual(a: readonly Range[], b: readonly Range[]): boolean {
  return a.length === b.length && a.every((r, i) => r.start === b[i]!.start && r.end === b[i]!.end);
}

// ---------------------------------------------------------------------------------------------
// The donor's block choice (8.5.2, V29).

/** The largest power of two `≤ n` (n ≥ 1). */
function largestPowerOfTwo(n: number): number {
  let m = 1;
  while (m * 2 <= n) m *= 2;
  return m;
}

/** 8.5.2 step 1 for one free interval `[s, s+n)`: its largest aligned block. */
export function largestAlignedBlock(interval: Range): Range {
  const s = interval.start;
  const n = interval.end - interval.start;
  const m = largestPowerOfTwo(n);
  const k = s % m;
  if (k === 0) return { start: s, end: s + m };
  if (m - k <= n % m) return { start: s + m - k, end: s + 2 * m - k };
  const h = m / 2;
  if (h >= k) return { start: s + h - k, end: s + 2 * h - k };
  return { start: s + m - k, end: s + m - k + h };
}

/**
 * Which block a donor gives for a request `[request.start, request.end)` out of its free
 * intervals (normalized), 8.5.2 steps 1–3: the largest aligned block of any free interval
 * clipped to the request (a later one wins ties), reduced to its upper half when it is larger
 * than half of all our free addresses in the request. `undefined` = nothing free there (deny).
 */
export function chooseDonation(free: readonly Range[], request: Range): Range | undefined {
  const clipped = intersectRanges(free, [request]);
  let best: Range | undefined;
  for (const interval of clipped) {
    const block = largestAlignedBlock(interval);
    if (best === undefined || block.end - block.start >= best.end - best.start) best = block;
  }
  if (best === undefined) return undefined;
  const size = best.end - best.start;
  const total = rangesSize(clipped);
  if (size > Math.floor(total / 2)) {
    return { start: best.start + Math.floor(size / 2), end: best.end };
  }
  return best;
}

// ---------------------------------------------------------------------------------------------

/** The addresses a peer owns, and which of them it has not handed out. */
export class Space {
  #owned: Range[] = [];
  #free: Range[] = [];

  /** Owned ranges, normalized (copies). */
  ownedRanges(): Range[] {
    return this.#owned.map((r) => ({ ...r }));
  }

  /** Free ranges, normalized (copies). */
  freeRanges(): Range[] {
    return this.#free.map((r) => ({ ...r }));
  }

  isEmpty(): boolean {
    return this.#owned.length === 0;
  }

  /** Adds ranges we now own, all free. They must not overlap what we already own. */
  addFree(ranges: readonly Range[]): void {
    const add = normalizeRanges(ranges);
    if (intersectRanges(this.#owned, add).length > 0) {
      throw new Error("space: added range overlaps a range already owned");
    }
    this.#owned = normalizeRanges([...this.#owned, ...add]);
    this.#free = normalizeRanges([...this.#free, ...add]);
  }

  /** Gives up owned ranges; every address in them must be free (else throws, nothing changed). */
  remove(ranges: readonly Range[]): void {
    const cut = normalizeRanges(ranges);
    const owned = intersectRanges(this.#owned, cut);
    if (rangesSize(intersectRanges(this.#free, cut)) !== rangesSize(owned)) {
      throw new Error("space: cannot remove a range with addresses in use");
    }
    this.#owned = subtractRanges(this.#owned, cut);
    this.#free = subtractRanges(this.#free, cut);
  }

  /** Forgets everything (`weave reset`). */
  clear(): void {
    this.#owned = [];
    this.#free = [];
  }

  owns(address: Address): boolean {
    return contains(this.#owned, address);
  }

  isFree(address: Address): boolean {
    return contains(this.#free, address);
  }

  numFree(): number {
    return rangesSize(this.#free);
  }

  /** Free addresses of ours inside `range`. */
  numFreeIn(range: Range): number {
    return rangesSize(intersectRanges(this.#free, [range]));
  }

  /** 8.4.5 `alloc(range)`: at least one address of ours inside `range` is not free. */
  hasAllocationsIn(range: Range): boolean {
    const clip = [range];
    return (
      rangesSize(intersectRanges(this.#owned, clip)) !==
      rangesSize(intersectRanges(this.#free, clip))
    );
  }

  /** Takes the lowest free address inside `range`; `undefined` if there is none. */
  allocate(range: Range): Address | undefined {
    const hit = intersectRanges(this.#free, [range])[0];
    if (hit === undefined) return undefined;
    this.#free = subtractRanges(this.#free, [{ start: hit.start, end: hit.start + 1 }]);
    return hit.start;
  }

  /** Takes one specific address if it is ours and free. */
  claim(address: Address): boolean {
    if (!contains(this.#free, address)) return false;
    this.#free = subtractRanges(this.#free, [{ start: address, end: address + 1 }]);
    return true;
  }

  /** Returns an address in use to the free pool. */
  free(address: Address): void {
    if (!contains(this.#owned, address) || contains(this.#free, address)) {
      throw new Error("space: freeing an address that is not ours or not in use");
    }
    this.#free = normalizeRanges([...this.#free, { start: address, end: address + 1 }]);
  }

  /** 8.5.2 steps 1–3 on our free space, without changing it. */
  chooseDonation(request: Range): Range | undefined {
    return chooseDonation(this.#free, request);
  }

  /** 8.5.2 steps 1–4 (space side): choose the block and remove it from our space. */
  donate(request: Range): Range | undefined {
    const block = chooseDonation(this.#free, request);
    if (block !== undefined) this.remove([block]);
    return block;
  }
}

function contains(ranges: readonly Range[], address: Address): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (address < r.start) hi = mid - 1;
    else if (address >= r.end) lo = mid + 1;
    else return true;
  }
  return false;
}
