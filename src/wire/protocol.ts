/**
 * The TCP control connection's fixed parts (spec 1.1, 1.2, 2.1, 2.3): the protocol header,
 * the encryption flag, message framing and message tags.
 */

export const PROTOCOL_MAGIC = Buffer.from("weave", "ascii");
export const PROTOCOL_HEADER_LEN = PROTOCOL_MAGIC.length + 2;
/** weft speaks only version 2; version 1 is legacy (spec 1.7). */
export const PROTOCOL_MIN_VERSION = 2;
export const PROTOCOL_MAX_VERSION = 2;
/** 10 MiB, on send and receive, counted on the ciphertext when encrypted (spec 2.1). */
export const MAX_TCP_MSG_SIZE = 10 * 1024 * 1024;
export const LENGTH_PREFIX_LEN = 4;

export const ENCRYPTION_FLAG_PLAIN = 0x00;
export const ENCRYPTION_FLAG_ENCRYPTED = 0x01;
export const PUBLIC_KEY_LEN = 32;

export const HEADER_TIMEOUT_MS = 10_000;
export const TCP_HEARTBEAT_MS = 30_000;
export const TCP_READ_TIMEOUT_MS = 60_000;

/** Message tags (spec 2.3). */
export const ProtocolTag = {
  Heartbeat: 0,
  ConnectionEstablished: 1,
  FragmentationReceived: 2,
  PMTUVerified: 3,
  Gossip: 4,
  GossipUnicast: 5,
  GossipBroadcast: 6,
  OverlayControlMsg: 7,
} as const;

export function emitProtocolHeader(min = PROTOCOL_MIN_VERSION, max = PROTOCOL_MAX_VERSION): Buffer {
  return Buffer.concat([PROTOCOL_MAGIC, Buffer.from([min, max])]);
}

export interface ProtocolRange {
  min: number;
  max: number;
}

/** Checks the peer's 7-byte header; returns its version range or a reason to refuse. */
export function parseProtocolHeader(bytes: Uint8Array): ProtocolRange | { error: string } {
  if (bytes.length !== PROTOCOL_HEADER_LEN) {
    return { error: `protocol header must be ${PROTOCOL_HEADER_LEN} bytes, got ${bytes.length}` };
  }
  if (!PROTOCOL_MAGIC.equals(bytes.subarray(0, PROTOCOL_MAGIC.length))) {
    return { error: "the remote is not speaking the weave protocol (bad magic)" };
  }
  return { min: bytes[5]!, max: bytes[6]! };
}

/** The version both sides use: the highest in both ranges (spec 1.1). */
export function negotiateVersion(
  ours: ProtocolRange,
  theirs: ProtocolRange,
): number | { error: string } {
  const lo = Math.max(ours.min, theirs.min);
  const hi = Math.min(ours.max, theirs.max);
  if (lo > hi) {
    return {
      error: `no common protocol version: we speak ${ours.min}..${ours.max}, the remote ${theirs.min}..${theirs.max}`,
    };
  }
  return hi;
}

/**
 * Splits a TCP byte stream into length-prefixed messages (spec 2.1). Chunks are appended as
 * they arrive; a length beyond the limit is an error before anything is buffered for it.
 */
export class MessageFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxMessage = MAX_TCP_MSG_SIZE) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next whole message, undefined if more bytes are needed; throws on a bad length. */
  next(): Buffer | undefined {
    if (this.buffered < LENGTH_PREFIX_LEN) return undefined;
    const head = this.peek(LENGTH_PREFIX_LEN);
    const length = head.readUInt32BE(0);
    if (length > this.maxMessage) {
      throw new Error(
        `incoming message of ${length} bytes exceeds the ${this.maxMessage}-byte limit`,
      );
    }
    if (this.buffered < LENGTH_PREFIX_LEN + length) return undefined;
    return this.take(LENGTH_PREFIX_LEN + length).subarray(LENGTH_PREFIX_LEN);
  }

  /** Raw bytes before framing starts (the header, flag and key). */
  takeRaw(n: number): Buffer | undefined {
    return this.buffered >= n ? this.take(n) : undefined;
  }

  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks.length === 0) return Buffer.alloc(0);
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    const first = this.peek(n);
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return out;
  }
}

export function frameMessage(body: Uint8Array): Buffer {
  if (body.length > MAX_TCP_MSG_SIZE)
    throw new RangeError(`message of ${body.length} bytes is over the limit`);
  const out = Buffer.allocUnsafe(LENGTH_PREFIX_LEN + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, LENGTH_PREFIX_LEN);
  return out;
}
