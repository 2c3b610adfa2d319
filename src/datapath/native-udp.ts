import * as native from "../native/addon.js";
import type { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import type { DatagramBatchHandler, DatagramSocket } from "../sleeve/datagram-socket.js";

const RECV_BATCH = 64;
/** Every IPv4 datagram, and every GRO-coalesced run of them, fits a slot. */
const RECV_SLOT = 65536;
/** A coalesced slot holds at most this many datagrams (the kernel's GRO segment limit). */
const MAX_SEGMENTS_PER_SLOT = 64;
const SOCKET_BUFFER = 4 * 1024 * 1024;

/**
 * The sleeve socket on the native addon: sendmmsg/recvmmsg, one syscall per batch, with UDP
 * segmentation offload on send (a run of equal-size packets to one peer crosses the kernel as
 * one) and UDP GRO on receive (the kernel hands over such runs coalesced, split here).
 */
export class NativeDatagramSocket implements DatagramSocket {
  readonly localPort: number;
  private readonly fd: number;
  private poller: native.Poller | undefined;
  private gso = true;
  private readonly rxBuf = Buffer.alloc(RECV_SLOT * RECV_BATCH);
  private readonly rxLengths = new Int32Array(RECV_BATCH);
  private readonly rxAddrs = new Uint32Array(RECV_BATCH * 2);
  private readonly rxSegments = new Int32Array(RECV_BATCH);
  // The batch as handed on: one entry per datagram, coalesced slots split.
  private readonly outOffsets = new Int32Array(RECV_BATCH * MAX_SEGMENTS_PER_SLOT);
  private readonly outLengths = new Int32Array(RECV_BATCH * MAX_SEGMENTS_PER_SLOT);
  private readonly outAddrs = new Uint32Array(RECV_BATCH * MAX_SEGMENTS_PER_SLOT * 2);

  constructor(
    host: string,
    port: number,
    private readonly counters: Counters,
    private readonly log: Logger,
  ) {
    this.fd = native.udpOpen(host, port, {
      rcvbuf: SOCKET_BUFFER,
      sndbuf: SOCKET_BUFFER,
      gro: true,
    });
    this.localPort = native.udpLocalPort(this.fd);
  }

  sendBatch(
    buf: Buffer,
    offsets: Int32Array,
    lengths: Int32Array,
    addrs: Uint32Array,
    count: number,
  ): number {
    if (this.gso) {
      try {
        return native.sendBatch(this.fd, buf, offsets, lengths, addrs, count, true);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== "EIO" && code !== "EINVAL") throw err;
        // An old kernel or a device without checksum offload: plain sends from now on.
        this.gso = false;
        this.log.warn("UDP segmentation offload unavailable; sending datagrams one by one", {
          error: (err as Error).message,
        });
      }
    }
    return native.sendBatch(this.fd, buf, offsets, lengths, addrs, count, false);
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
          this.rxSegments,
        );
        if (count === 0) break;
        const datagrams = this.split(count);
        if (datagrams > 0)
          handler(this.rxBuf, this.outOffsets, this.outLengths, this.outAddrs, datagrams);
        if (count < RECV_BATCH) break;
      }
    });
    this.poller.start();
  }

  /** One entry per datagram: slots holding a GRO run are cut at its segment size. */
  private split(count: number): number {
    let n = 0;
    for (let i = 0; i < count; i++) {
      const length = this.rxLengths[i]!;
      if (length > RECV_SLOT) {
        this.counters.sleeve_rx_oversized++; // cut to fit: cannot be a sleeve packet
        continue;
      }
      const start = i * RECV_SLOT;
      const segment = this.rxSegments[i]!;
      if (segment <= 0 || segment >= length) {
        n = this.push(n, start, length, i);
        continue;
      }
      for (let at = 0; at < length && n < this.outLengths.length; at += segment) {
        n = this.push(n, start + at, Math.min(segment, length - at), i);
      }
    }
    return n;
  }

  private push(n: number, offset: number, length: number, slot: number): number {
    this.outOffsets[n] = offset;
    this.outLengths[n] = length;
    this.outAddrs[2 * n] = this.rxAddrs[2 * slot]!;
    this.outAddrs[2 * n + 1] = this.rxAddrs[2 * slot + 1]!;
    return n + 1;
  }

  close(): void {
    this.poller?.close();
    native.closeFd(this.fd);
  }
}
