/**
 * fastdp's in-tunnel heartbeat (spec 5.3) and its VNI scheme (spec 5.2). A heartbeat is an
 * Ethernet frame of 14 + MTU bytes with zero MACs and EtherType, the connection UID at 14 and
 * the frame length at 22: sent with DF, so it also proves that full-size frames pass.
 */
import { ETH_HEADER_LEN } from "../wire/ethernet.js";
import { SHORT_ID_LIMIT } from "../wire/topology.js";

export const HEARTBEAT_UID_OFFSET = 14;
export const HEARTBEAT_LENGTH_OFFSET = 22;
const HEARTBEAT_MIN_LEN = HEARTBEAT_LENGTH_OFFSET + 2;

/** The VNI of frames captured by `src` and sent to `dst` (12-bit short ids). */
export function fastdpVni(srcShortId: number, dstShortId: number): number {
  for (const id of [srcShortId, dstShortId]) {
    if (!Number.isInteger(id) || id < 0 || id >= SHORT_ID_LIMIT) {
      throw new RangeError(`short id ${id} is not a 12-bit number`);
    }
  }
  return srcShortId | (dstShortId << 12);
}

export function emitFastdpHeartbeat(connectionUid: bigint, mtu: number): Buffer {
  const length = ETH_HEADER_LEN + mtu;
  if (!Number.isInteger(mtu) || length < HEARTBEAT_MIN_LEN || length > 0xffff) {
    throw new RangeError(`datapath MTU ${mtu} cannot carry a heartbeat`);
  }
  const frame = Buffer.alloc(length);
  frame.writeBigUInt64BE(connectionUid, HEARTBEAT_UID_OFFSET);
  frame.writeUInt16BE(length, HEARTBEAT_LENGTH_OFFSET);
  return frame;
}

/** True when the first 14 bytes are zero: a heartbeat, not an endpoint's frame. */
export function isFastdpHeartbeat(frame: Uint8Array): boolean {
  if (frame.length < HEARTBEAT_MIN_LEN) return false;
  for (let i = 0; i < ETH_HEADER_LEN; i++) if (frame[i] !== 0) return false;
  return true;
}

/** Checks a heartbeat for this connection: its UID, and that it arrived whole. */
export function checkFastdpHeartbeat(frame: Buffer, connectionUid: bigint): string | undefined {
  if (!isFastdpHeartbeat(frame)) return "not a fastdp heartbeat";
  const uid = frame.readBigUInt64BE(HEARTBEAT_UID_OFFSET);
  if (uid !== connectionUid) return `heartbeat for connection ${uid}, not ours`;
  const length = frame.readUInt16BE(HEARTBEAT_LENGTH_OFFSET);
  if (length !== frame.length) {
    return `heartbeat says ${length} bytes but ${frame.length} arrived`;
  }
  return undefined;
}
