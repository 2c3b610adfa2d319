import { PEER_NAME_BYTES, readPeerName, writePeerName, type PeerName } from "./peer-name.js";
import { ETH_HEADER_LEN } from "./ethernet.js";

/**
 * Sleeve UDP packet layout (spec 3.2):
 *   plain:      [sender name: 6][frame record]...
 *   frame record: [src peer: 6][dst peer: 6][len: uint16 BE][len bytes: Ethernet frame]
 * (The encrypted layout inserts [seq|DF: 8][secretbox] after the sender name.)
 */

export const SENDER_NAME_LEN = PEER_NAME_BYTES;
export const RECORD_HEADER_LEN = 2 * PEER_NAME_BYTES + 2;
/** Weave puts at most this many frames in one UDP packet (spec 3.6). */
export const MAX_FRAMES_PER_PACKET = 100;
/** Largest UDP payload over IPv4: 65535 − 20 (IP) − 8 (UDP). */
export const MAX_UDP_PAYLOAD = 65507;
/** A record holds at most this much, since its length field is 16 bits. */
export const MAX_RECORD_FRAME_LEN = 0xffff;

/** Special frames (spec 3.4): all-zero Ethernet header, told apart by length. */
export const HEARTBEAT_FRAME_LEN = ETH_HEADER_LEN + 8;
export const FRAG_TEST_FRAME_LEN = 60001;
export const PMTU_PROBE_FRAME_LEN = 60000;

/**
 * Parsed records of one packet, in preallocated typed arrays: the receive path parses every
 * packet into the same instance, so parsing allocates nothing.
 */
export class RecordList {
  count = 0;
  readonly src: Float64Array;
  readonly dst: Float64Array;
  readonly offset: Int32Array;
  readonly length: Int32Array;

  constructor(readonly capacity = Math.ceil(MAX_UDP_PAYLOAD / RECORD_HEADER_LEN)) {
    this.src = new Float64Array(capacity);
    this.dst = new Float64Array(capacity);
    this.offset = new Int32Array(capacity);
    this.length = new Int32Array(capacity);
  }
}

export type RecordsVerdict = "ok" | "truncated-record" | "trailing-bytes" | "too-many-records";

/**
 * Parses the frame records in buf[start, end). Records are read while at least a header's worth
 * of bytes remains; a record longer than the rest of the packet, or leftover bytes shorter than
 * a header, makes the packet malformed, but the records before it stay valid (as Weave).
 */
export function parseRecords(
  buf: Uint8Array,
  start: number,
  end: number,
  out: RecordList,
): RecordsVerdict {
  out.count = 0;
  let pos = start;
  while (end - pos >= RECORD_HEADER_LEN) {
    const frameLength = (buf[pos + 12]! << 8) | buf[pos + 13]!;
    const frameStart = pos + RECORD_HEADER_LEN;
    if (frameLength > end - frameStart) return "truncated-record";
    if (out.count === out.capacity) return "too-many-records";
    const i = out.count++;
    out.src[i] = readPeerName(buf, pos);
    out.dst[i] = readPeerName(buf, pos + PEER_NAME_BYTES);
    out.offset[i] = frameStart;
    out.length[i] = frameLength;
    pos = frameStart + frameLength;
  }
  return pos === end ? "ok" : "trailing-bytes";
}

export function writeRecordHeader(
  buf: Uint8Array,
  offset: number,
  src: PeerName,
  dst: PeerName,
  frameLength: number,
): void {
  writePeerName(buf, offset, src);
  writePeerName(buf, offset + PEER_NAME_BYTES, dst);
  buf[offset + 12] = frameLength >>> 8;
  buf[offset + 13] = frameLength & 0xff;
}

/** True if the frame's first 14 bytes are zero: a forwarder's own control frame (spec 3.4). */
export function hasZeroEthernetHeader(buf: Uint8Array, offset: number, length: number): boolean {
  if (length < ETH_HEADER_LEN) return false;
  for (let i = 0; i < ETH_HEADER_LEN; i++) if (buf[offset + i] !== 0) return false;
  return true;
}

export interface SleeveRecord {
  src: PeerName;
  dst: PeerName;
  frame: Uint8Array;
}

/** Builds a whole plain packet; for tests and tools (the data path writes into its arena). */
export function emitPlainPacket(sender: PeerName, records: readonly SleeveRecord[]): Buffer {
  const size = records.reduce((n, r) => n + RECORD_HEADER_LEN + r.frame.length, SENDER_NAME_LEN);
  const out = Buffer.alloc(size);
  writePeerName(out, 0, sender);
  let pos = SENDER_NAME_LEN;
  for (const record of records) {
    if (record.frame.length > MAX_RECORD_FRAME_LEN)
      throw new RangeError("frame too long for a record");
    writeRecordHeader(out, pos, record.src, record.dst, record.frame.length);
    out.set(record.frame, pos + RECORD_HEADER_LEN);
    pos += RECORD_HEADER_LEN + record.frame.length;
  }
  return out;
}

/** The heartbeat frame: 14 zero bytes, then the connection UID (spec 3.4, vector V8). */
export function writeHeartbeatFrame(buf: Uint8Array, offset: number, connectionUid: bigint): void {
  buf.fill(0, offset, offset + ETH_HEADER_LEN);
  new DataView(buf.buffer, buf.byteOffset).setBigUint64(offset + ETH_HEADER_LEN, connectionUid);
}

export function readHeartbeatUid(buf: Uint8Array, offset: number): bigint {
  return new DataView(buf.buffer, buf.byteOffset).getBigUint64(offset + ETH_HEADER_LEN);
}
