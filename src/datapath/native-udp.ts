import * as native from "../native/addon.js";
import type { DatagramBatchHandler, DatagramSocket } from "../sleeve/datagram-socket.js";

const RECV_BATCH = 64;
/** Every IPv4 datagram fits, so nothing a peer sends is ever truncated. */
const RECV_SLOT = 65536;
const SOCKET_BUFFER = 4 * 1024 * 1024;

/** The sleeve socket on the native addon: sendmmsg/recvmmsg, one syscall per batch. */
export class NativeDatagramSocket implements DatagramSocket {
  readonly localPort: number;
  private readonly fd: number;
  private poller: native.Poller | undefined;
  private readonly rxBuf = Buffer.alloc(RECV_SLOT * RECV_BATCH);
  private readonly rxLengths = new Int32Array(RECV_BATCH);
  private readonly rxAddrs = new Uint32Array(RECV_BATCH * 2);

  constructor(host: string, port: number) {
    this.fd = native.udpOpen(host, port, { rcvbuf: SOCKET_BUFFER, sndbuf: SOCKET_BUFFER });
    this.localPort = native.udpLocalPort(this.fd);
  }

  sendBatch(
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
  ): number {
    return native.sendBatch(this.fd, buf, offsets, lengths, addrs, count);
  }

  startReceiving(handler: DatagramBatchHandler): void {
    this.poller = new native.Poller(this.fd, () => {
      // A few batches per wake-up, then yield so TAP input and timers get their turn.
      for (let round = 0; round < 4; round++) {
        const count = native.recvBatch(
          this.fd,
          this.rxBuf,
          RECV_SLOT,
          this.rxLengths,
          this.rxAddrs,
          RECV_BATCH,
        );
        if (count === 0) break;
        handler(this.rxBuf, RECV_SLOT, this.rxLengths, this.rxAddrs, count);
        if (count < RECV_BATCH) break;
      }
    });
    this.poller.start();
  }

  close(): void {
    this.poller?.stop();
    this.poller?.close();
    native.closeFd(this.fd);
  }
}
