/**
 * Weave's sleeve replay window (spec 3.3), one per decryptor instance (DF / non-DF stream).
 *
 * Sequence numbers are 63-bit (bit 63 of the wire field is the DF flag; the caller strips it).
 * They are passed as two numbers, `hi` = bits 62..32 (0 .. 2^31 - 1) and `lo` = bits 31..0, or
 * as a bigint through the *Seq variants. With W = 2^20: window = seq >> 20 (< 2^43, so exact
 * in a double), offset = seq mod W. State: the `current` window number and two bit sets of W
 * bits, for `current` and `current - 1` — 2 x 128 KiB, allocated once in the constructor.
 *
 *   window - current   action
 *   < -1               too old
 *   -1                 look up / insert in the previous set
 *   0                  look up / insert in the current set
 *   +1                 slide: previous := current, current := empty, current++; insert
 *   > +1               jump: both sets emptied, current := window; insert
 *
 * A sequence number is accepted iff its offset is not yet in the selected set.
 *
 * Usage: authenticate (decrypt) the packet FIRST, then call `accept` — a forged packet must
 * never change the window. `check` is a side-effect-free look-up (e.g. a pre-filter before
 * decrypting, or diagnostics); only `accept` records a sequence number.
 */

export type ReplayVerdict = "ok" | "replayed" | "too-old";

export const REPLAY_WINDOW_BITS = 20;
export const REPLAY_WINDOW_SIZE = 2 ** REPLAY_WINDOW_BITS;
const WORDS = REPLAY_WINDOW_SIZE / 32;
const OFFSET_MASK = REPLAY_WINDOW_SIZE - 1;
/** Windows per 2^32 sequence numbers. */
const WINDOWS_PER_HI = 2 ** (32 - REPLAY_WINDOW_BITS);
const MAX_HI = 0x7fff_ffff;
const TWO_32 = 2n ** 32n;
const MAX_SEQ = 2n ** 63n - 1n;

function checkParts(hi: number, lo: number): void {
  if (!(
    Number.isInteger(hi) &&
    hi >= 0 &&
    hi <= MAX_HI &&
    Number.isInteger(lo) &&
    lo >= 0 &&
    lo <= 0xffff_ffff
  )) {
    throw new RangeError(`replay window: sequence parts out of range (hi ${hi}, lo ${lo})`);
  }
}

function splitSeq(seq: bigint): [number, number] {
  if (seq < 0n || seq > MAX_SEQ)
    throw new RangeError(`replay window: sequence ${seq} is not 63-bit`);
  return [Number(seq / TWO_32), Number(seq % TWO_32)];
}

export class ReplayWindow {
  #cur = new Uint32Array(WORDS);
  #prev = new Uint32Array(WORDS);
  #current = 0;

  /** The window number of the newest window seen (diagnostics). */
  get currentWindow(): number {
    return this.#current;
  }

  /** Would `accept(hi, lo)` accept? Does not change any state. */
  check(hi: number, lo: number): ReplayVerdict {
    checkParts(hi, lo);
    const delta = hi * WINDOWS_PER_HI + (lo >>> REPLAY_WINDOW_BITS) - this.#current;
    if (delta > 0) return "ok";
    if (delta < -1) return "too-old";
    const offset = lo & OFFSET_MASK;
    const set = delta === 0 ? this.#cur : this.#prev;
    return (set[offset >>> 5]! >>> (offset & 31)) & 1 ? "replayed" : "ok";
  }

  /**
   * Checks and, when "ok", records the sequence number. Call only for authenticated packets.
   */
  accept(hi: number, lo: number): ReplayVerdict {
    checkParts(hi, lo);
    const window = hi * WINDOWS_PER_HI + (lo >>> REPLAY_WINDOW_BITS);
    const delta = window - this.#current;
    if (delta < -1) return "too-old";
    let set: Uint32Array;
    if (delta === 0) {
      set = this.#cur;
    } else if (delta === -1) {
      set = this.#prev;
    } else {
      if (delta === 1) {
        const old = this.#prev;
        this.#prev = this.#cur;
        this.#cur = old;
        old.fill(0);
      } else {
        this.#prev.fill(0);
        this.#cur.fill(0);
      }
      this.#current = window;
      set = this.#cur;
    }
    const offset = lo & OFFSET_MASK;
    const word = offset >>> 5;
    const bit = 1 << (offset & 31);
    const w = set[word]!;
    if (w & bit) return "replayed";
    set[word] = w | bit;
    return "ok";
  }

  checkSeq(seq: bigint): ReplayVerdict {
    const [hi, lo] = splitSeq(seq);
    return this.check(hi, lo);
  }

  acceptSeq(seq: bigint): ReplayVerdict {
    const [hi, lo] = splitSeq(seq);
    return this.accept(hi, lo);
  }
}
