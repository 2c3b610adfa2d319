import * as native from "../native/addon.js";
import type { Counters } from "../util/counters.js";
import type { Logger } from "../util/log.js";
import type { Network } from "../switch/network.js";
import type { LocalPort } from "../switch/port.js";
import type { FramePort, FramePortSink } from "./frame-port.js";
import type { OutputBatch } from "./output-batch.js";

const READ_BATCH = 64;
const WRITE_QUEUE = 256;
/** Rounds of READ_BATCH per wake-up before yielding, so that UDP input is not starved. */
const READ_ROUNDS = 4;
/** Read slots hold any frame a TAP with an MTU up to 16k can hand us; bigger ones are cut and dropped. */
export const TAP_SLOT_SIZE = 16384;

export interface TapPortOptions {
  /** Interface name; attaches to it if it exists (a persistent TAP), else creates it. */
  ifname: string;
  /** Network namespace the TAP lives in (path under /run/netns), if not ours. */
  netnsPath?: string;
  network: Network;
  output: OutputBatch;
  sink: FramePortSink;
  counters: Counters;
  log: Logger;
}

/**
 * A TAP device as a switch port. Reads come in batches from the native poller; writes are
 * queued as (offset, length) into the buffer they arrived in and written in one call at the end
 * of the input batch, so a frame is never copied in JS on its way from UDP to the TAP.
 */
export class TapPort implements FramePort {
  readonly name: string;
  readonly network: Network;
  /** Set for an attached endpoint (anti-spoofing); see switch/endpoint-guard.ts. */
  guard: LocalPort["guard"] = undefined;
  wroteSinceRead = false;
  private readonly fd: number;
  private readonly poller: native.Poller;
  private readonly rxBuf = Buffer.alloc(TAP_SLOT_SIZE * READ_BATCH);
  private readonly rxLengths = new Int32Array(READ_BATCH);
  private txBuf: Buffer | undefined;
  private readonly txOffsets = new Int32Array(WRITE_QUEUE);
  private readonly txLengths = new Int32Array(WRITE_QUEUE);
  private txCount = 0;
  private closed = false;

  constructor(private readonly opts: TapPortOptions) {
    const tap = native.tapOpen(opts.ifname, opts.netnsPath ? { netnsPath: opts.netnsPath } : {});
    this.fd = tap.fd;
    this.name = opts.netnsPath ? `${opts.netnsPath}:${tap.name}` : tap.name;
    this.network = opts.network;
    this.poller = new native.Poller(this.fd, () => this.readBatches());
  }

  start(): void {
    this.poller.start();
  }

  readPending(): void {
    this.readBatches();
  }

  private readBatches(): void {
    this.wroteSinceRead = false;
    for (let round = 0; round < READ_ROUNDS && !this.closed; round++) {
      let count: number;
      try {
        count = native.readFrames(this.fd, this.rxBuf, TAP_SLOT_SIZE, this.rxLengths, READ_BATCH);
      } catch (err) {
        // The device went away (deleted, or its namespace was): stop polling a dead fd.
        this.opts.sink.failed(this, err as Error);
        return;
      }
      if (count === 0) return;
      this.opts.counters.tap_rx_frames += count;
      this.opts.sink.frames(this, this.rxBuf, TAP_SLOT_SIZE, this.rxLengths, count);
      if (count < READ_BATCH) return;
    }
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
    this.txBuf = undefined;
    this.wroteSinceRead = true;
    this.opts.counters.tap_tx_frames += written;
    this.opts.counters.tap_tx_dropped += count - written;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    native.closeFd(this.fd);
  }
}
