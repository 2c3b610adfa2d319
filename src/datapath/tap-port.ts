import * as native from "../native/addon.js";
import type { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import type { Network } from "../switch/network.js";
import type { LocalPort } from "../switch/port.js";
import type { OutputBatch } from "./output-batch.js";

const READ_BATCH = 64;
const WRITE_QUEUE = 256;

export interface TapPortOptions {
  /** Interface name; attaches to it if it exists (a persistent TAP), else creates it. */
  ifname: string;
  /** Network namespace the TAP lives in (path under /run/netns), if not ours. */
  netnsPath?: string;
  network: Network;
  /** Read buffer slot: larger than any frame the TAP may hand us. */
  slotSize: number;
  output: OutputBatch;
  counters: Counters;
  log: Logger;
}

/**
 * A TAP device as a switch port. Reads come in batches from the native poller; writes are
 * queued as (offset, length) into the buffer they arrived in and written in one call at the end
 * of the input batch, so a frame is never copied on its way from UDP to the TAP.
 */
export class TapPort implements LocalPort {
  readonly name: string;
  readonly network: Network;
  private readonly fd: number;
  private readonly poller: native.Poller;
  private readonly rxBuf: Buffer;
  private readonly rxLengths = new Int32Array(READ_BATCH);
  private txBuf: Buffer | undefined;
  private readonly txOffsets = new Int32Array(WRITE_QUEUE);
  private readonly txLengths = new Int32Array(WRITE_QUEUE);
  private txCount = 0;
  private closed = false;
  /** Set by a write: the kernel may have answered at once (ARP, ping, TCP ACKs). */
  wroteSinceRead = false;
  private readonly readBatches: () => void;

  constructor(
    private readonly opts: TapPortOptions,
    onFrames: (
      port: TapPort,
      buf: Buffer,
      slotSize: number,
      lengths: Int32Array,
      count: number,
    ) => void,
  ) {
    const tap = native.tapOpen(opts.ifname, opts.netnsPath ? { netnsPath: opts.netnsPath } : {});
    this.fd = tap.fd;
    this.name = opts.netnsPath ? `${opts.netnsPath}:${tap.name}` : tap.name;
    this.network = opts.network;
    this.rxBuf = Buffer.alloc(opts.slotSize * READ_BATCH);
    this.readBatches = () => {
      // Bounded: after a few batches yield to the loop so UDP input is not starved.
      for (let round = 0; round < 4 && !this.closed; round++) {
        const count = native.readFrames(
          this.fd,
          this.rxBuf,
          opts.slotSize,
          this.rxLengths,
          READ_BATCH,
        );
        if (count === 0) break;
        opts.counters.tap_rx_frames += count;
        onFrames(this, this.rxBuf, opts.slotSize, this.rxLengths, count);
        if (count < READ_BATCH) break;
      }
    };
    this.poller = new native.Poller(this.fd, this.readBatches);
  }

  /**
   * Reads what is waiting now, without waiting for the poller. Called right after our writes:
   * the kernel often answers while we write, and reading it in the same turn saves a wake-up
   * per round trip.
   */
  readPending(): void {
    this.wroteSinceRead = false;
    this.readBatches();
  }

  start(): void {
    this.poller.start();
  }

  enqueue(buf: Buffer, offset: number, length: number): void {
    if (this.closed) return;
    if (this.txCount === 0) {
      this.opts.output.touch(this);
    } else if (buf !== this.txBuf || this.txCount === WRITE_QUEUE) {
      this.flush();
      this.opts.output.touch(this);
    }
    this.txBuf = buf;
    this.txOffsets[this.txCount] = offset;
    this.txLengths[this.txCount] = length;
    this.txCount++;
  }

  flush(): void {
    const count = this.txCount;
    if (count === 0 || this.txBuf === undefined) return;
    this.txCount = 0;
    let written = 0;
    try {
      written = native.writeFrames(this.fd, this.txBuf, this.txOffsets, this.txLengths, count);
    } catch (err) {
      this.opts.log.warn("TAP write failed", { port: this.name, error: (err as Error).message });
    }
    this.wroteSinceRead = true;
    this.opts.counters.tap_tx_frames += written;
    this.opts.counters.tap_tx_dropped += count - written;
    this.txBuf = undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.stop();
    this.poller.close();
    native.closeFd(this.fd);
  }
}
