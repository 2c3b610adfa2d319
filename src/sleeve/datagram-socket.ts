/**
 * The UDP socket the sleeve runs on, as the data path sees it: batched sends from one arena,
 * batched receives into another. Two implementations: the native addon (sendmmsg/recvmmsg) and
 * Node's dgram as a fallback where the addon cannot load.
 */
import { parseIpv4 } from "../wire/ipv4.js";

export interface DatagramSocket {
  readonly localPort: number;
  /** Sends datagram i = buf[offsets[i], +lengths[i]) to (addrs[2i], addrs[2i+1]); returns how many went. */
  sendBatch(
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
  ): number;
  /** Starts delivering received datagrams, a batch per call. */
  startReceiving(handler: DatagramBatchHandler): void;
  close(): void;
}

/** Datagram i is buf[offsets[i], +lengths[i]) from (addrs[2i], addrs[2i+1]). */
export type DatagramBatchHandler = (
  buf: Buffer,
  offsets: Int32Array,
  lengths: Int32Array,
  addrs: Uint32Array,
  count: number,
) => void;

export function ipv4ToUint32(text: string): number {
  const value = parseIpv4(text);
  if (value === undefined) throw new Error(`not an IPv4 address: ${JSON.stringify(text)}`);
  return value;
}
