/**
 * The 24-byte secretbox nonces (never transmitted as such), spec 2.2 and 3.3:
 *
 *   TCP:    byte 0 = 0x80 if the sender is the outbound side | 0x40;  bytes 16..23 = counter BE
 *   sleeve: byte 0 = 0x80 if the sender is the outbound side;         bytes 16..23 = seq|DF field
 *
 * Bytes 1..15 are zero. "Outbound" = the peer that dialled the TCP connection. The writers fill
 * all 24 bytes, so one buffer can be reused for every packet.
 */

export const NONCE_LEN = 24;
/** The 8-byte `seq|DF` field of an encrypted sleeve packet. */
export const SLEEVE_SEQ_LEN = 8;
/** Bit 63 of the sleeve `seq|DF` field, as a bit of its high 32-bit word. */
export const SLEEVE_DF_BIT_HI = 0x8000_0000;

const OUTBOUND_BIT = 0x80;
const TCP_BIT = 0x40;
const TWO_32 = 2 ** 32;

function writeU64(buf: Uint8Array, off: number, hi: number, lo: number): void {
  buf[off] = hi >>> 24;
  buf[off + 1] = (hi >>> 16) & 0xff;
  buf[off + 2] = (hi >>> 8) & 0xff;
  buf[off + 3] = hi & 0xff;
  buf[off + 4] = lo >>> 24;
  buf[off + 5] = (lo >>> 16) & 0xff;
  buf[off + 6] = (lo >>> 8) & 0xff;
  buf[off + 7] = lo & 0xff;
}

function checkCounter(counter: number): void {
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new RangeError(`nonce counter must be a non-negative safe integer, got ${counter}`);
  }
}

function writePrefix(nonce: Uint8Array, first: number): void {
  if (nonce.length !== NONCE_LEN) throw new RangeError("nonce buffer must be 24 bytes");
  nonce[0] = first;
  nonce.fill(0, 1, 16);
}

/** TCP message nonce for `counter` (0 = the features message) of the given sender. */
export function writeTcpNonce(nonce: Uint8Array, senderIsOutbound: boolean, counter: number): void {
  checkCounter(counter);
  writePrefix(nonce, (senderIsOutbound ? OUTBOUND_BIT : 0) | TCP_BIT);
  writeU64(nonce, 16, Math.floor(counter / TWO_32), counter >>> 0);
}

/**
 * Writes the 8-byte `seq|DF` field of a sleeve packet: the stream counter, with bit 63 set for
 * the DF stream. Counters are < 2^53 (JS numbers); the receiver side handles full 63-bit values.
 */
export function writeSleeveSeq(buf: Uint8Array, off: number, counter: number, df: boolean): void {
  checkCounter(counter);
  const hi = Math.floor(counter / TWO_32) | (df ? SLEEVE_DF_BIT_HI : 0);
  writeU64(buf, off, hi >>> 0, counter >>> 0);
}

/** Sleeve nonce: polarity byte, then the 8-byte `seq|DF` field copied exactly as sent. */
export function writeSleeveNonce(
  nonce: Uint8Array,
  senderIsOutbound: boolean,
  seqField: Uint8Array,
  seqOffset: number,
): void {
  writePrefix(nonce, senderIsOutbound ? OUTBOUND_BIT : 0);
  for (let i = 0; i < SLEEVE_SEQ_LEN; i++) nonce[16 + i] = seqField[seqOffset + i]!;
}
