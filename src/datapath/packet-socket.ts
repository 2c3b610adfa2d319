import * as native from "../native/addon.js";

/** Default read slot: a frame of up to this many bytes (Ethernet header included) is delivered. */
export const PACKET_SLOT_SIZE = 16384;
/** Frames read per readFrames call; heartbeats are a few per second, so a small batch will do. */
const READ_BATCH = 4;
/** Batches per wake-up before yielding to the event loop. */
const READ_ROUNDS = 4;

/**
 * Send errors that mean "this frame did not go out" rather than a bug: queue full (the native
 * side already stops at EAGAIN/ENOBUFS/EIO), the device down (ENETDOWN), gone (ENXIO, ENODEV),
 * or the frame longer than the device MTU allows right now (EMSGSIZE, e.g. after an MTU change).
 */
const DROP_ERRORS = new Set([
  "EAGAIN",
  "ENOBUFS",
  "EIO",
  "ENETDOWN",
  "ENXIO",
  "ENODEV",
  "EMSGSIZE",
]);

export interface PacketSocketOptions {
  /** Network namespace file (e.g. /run/netns/foo) the interface lives in, if not ours. */
  netnsPath?: string;
  /** Largest frame delivered, Ethernet header included; longer ones are counted and dropped. */
  maxFrameSize?: number;
  /**
   * Called once if reading fails for a reason other than the device going down (which is
   * harmless: the socket resumes when the device is up again). The socket is closed first.
   * Without it the error is thrown from the poll callback (an uncaught exception).
   */
  onError?: (err: Error) => void;
}

export interface PacketSocketStats {
  rxFrames: number;
  /** Frames longer than maxFrameSize, dropped. */
  rxOversized: number;
  txFrames: number;
  /** Frames send() could not hand to the kernel (see DROP_ERRORS), or sent after close(). */
  txDropped: number;
}

/**
 * The fast datapath's heartbeat channel on one VXLAN device: an AF_PACKET socket (see
 * native packetOpen) that only ever receives frames whose MACs and EtherType are all zero, never
 * sees what this host sends on the device, and sends whole Ethernet frames on it.
 *
 * Polling starts in the constructor. `onFrame` gets its own copy of each frame (heartbeats are
 * rare, so the copy costs nothing and the caller may keep it); an exception it throws propagates
 * out of the poll callback.
 */
export class PacketSocket {
  readonly ifname: string;
  readonly stats: PacketSocketStats = { rxFrames: 0, rxOversized: 0, txFrames: 0, txDropped: 0 };
  private readonly fd: number;
  private readonly poller: native.Poller;
  private readonly slotSize: number;
  private readonly rxBuf: Buffer;
  private readonly rxLengths = new Int32Array(READ_BATCH);
  private readonly txOffsets = new Int32Array(1);
  private readonly txLengths = new Int32Array(1);
  private closed = false;

  constructor(
    ifname: string,
    private readonly onFrame: (frame: Buffer) => void,
    private readonly opts: PacketSocketOptions = {},
  ) {
    const max = opts.maxFrameSize ?? PACKET_SLOT_SIZE - 1;
    if (!Number.isInteger(max) || max < 14 || max > 262144) {
      throw new RangeError(`PacketSocket: maxFrameSize ${max} is not in 14..262144`);
    }
    // One spare byte: a frame that fills its whole slot may have been cut, so it is oversized.
    this.slotSize = max + 1;
    this.rxBuf = Buffer.alloc(this.slotSize * READ_BATCH);
    this.ifname = opts.netnsPath ? `${opts.netnsPath}:${ifname}` : ifname;
    this.fd = native.packetOpen(ifname, opts.netnsPath ? { netnsPath: opts.netnsPath } : {});
    try {
      this.poller = new native.Poller(this.fd, () => this.readAll());
      this.poller.start();
    } catch (err) {
      native.closeFd(this.fd);
      throw err;
    }
  }

  /** Sends one whole Ethernet frame; false (and counted in stats.txDropped) if it was dropped. */
  send(frame: Buffer): boolean {
    if (this.closed) {
      this.stats.txDropped++;
      return false;
    }
    this.txLengths[0] = frame.length;
    let written: number;
    try {
      written = native.writeFrames(this.fd, frame, this.txOffsets, this.txLengths, 1);
    } catch (err) {
      if (!DROP_ERRORS.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
      written = 0;
    }
    if (written === 1) {
      this.stats.txFrames++;
      return true;
    }
    this.stats.txDropped++;
    return false;
  }

  /** Stops polling and closes the socket; later calls do nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    native.closeFd(this.fd);
  }

  private readAll(): void {
    for (let round = 0; round < READ_ROUNDS && !this.closed; round++) {
      let count: number;
      try {
        count = native.readFrames(this.fd, this.rxBuf, this.slotSize, this.rxLengths, READ_BATCH);
      } catch (err) {
        // The device went down: the kernel reports it once on the socket, and the socket
        // receives again once the device is up. Anything else is not expected to heal.
        if ((err as NodeJS.ErrnoException).code === "ENETDOWN") return;
        this.fail(err as Error);
        return;
      }
      for (let i = 0; i < count && !this.closed; i++) {
        const length = this.rxLengths[i]!;
        if (length >= this.slotSize) {
          this.stats.rxOversized++;
          continue;
        }
        this.stats.rxFrames++;
        const start = i * this.slotSize;
        this.onFrame(Buffer.from(this.rxBuf.subarray(start, start + length)));
      }
      if (count < READ_BATCH) return;
    }
  }

  private fail(err: Error): void {
    this.close();
    const wrapped = new Error(`PacketSocket ${this.ifname}: ${err.message}`, { cause: err });
    if (this.opts.onError === undefined) throw wrapped;
    this.opts.onError(wrapped);
  }
}
