import * as dgram from "node:dgram";
import type { DatagramBatchHandler, DatagramSocket } from "../sleeve/datagram-socket.js";
import { ipv4ToUint32 } from "../sleeve/datagram-socket.js";
import { formatIpv4 } from "../wire/ipv4.js";

/**
 * The sleeve socket on Node's dgram, for where the native addon is not available: one
 * syscall per datagram, so slower, but the same behaviour.
 */
export class DgramDatagramSocket implements DatagramSocket {
  private readonly offsets = new Int32Array(1);
  private readonly lengths = new Int32Array(1);
  private readonly addrs = new Uint32Array(2);

  private constructor(
    private readonly socket: dgram.Socket,
    readonly localPort: number,
  ) {}

  static async open(host: string, port: number): Promise<DgramDatagramSocket> {
    const socket = dgram.createSocket({
      type: "udp4",
      recvBufferSize: 4 << 20,
      sendBufferSize: 4 << 20,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, host, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    return new DgramDatagramSocket(socket, socket.address().port);
  }

  sendBatch(
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
  ): number {
    for (let i = 0; i < count; i++) {
      const start = offsets[i]!;
      // dgram may send after this returns, and the arena is reused at once: copy.
      const datagram = Buffer.from(buf.subarray(start, start + lengths[i]!));
      this.socket.send(datagram, addrs[2 * i + 1]!, formatIpv4(addrs[2 * i]!));
    }
    return count;
  }

  startReceiving(handler: DatagramBatchHandler): void {
    this.socket.on("error", () => {
      // ICMP errors surface here; the socket keeps working.
    });
    this.socket.on("message", (msg, rinfo) => {
      this.lengths[0] = msg.length;
      this.addrs[0] = ipv4ToUint32(rinfo.address);
      this.addrs[1] = rinfo.port;
      handler(msg, this.offsets, this.lengths, this.addrs, 1);
    });
  }

  close(): void {
    this.socket.close();
  }
}
