import type { Counters } from "../util/counters.js";
import type { DatagramSocket } from "./datagram-socket.js";

/** Encrypts a finished packet in place, its length unchanged (room was reserved for it). */
export interface PacketSealer {
  seal(buf: Buffer, offset: number, length: number): void;
}

/**
 * Outgoing sleeve packets of one batch, side by side in one preallocated buffer, sent with a
 * single batched send. Forwarders open a slot, fill it with records, and the data path flushes
 * the arena once per input batch (or when it fills up). `generation` changes on every flush so
 * that a forwarder can tell its open slot has been sent.
 */
export class PacketArena {
  readonly buf: Buffer;
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  readonly addrs: Uint32Array;
  /** Per slot, what seals its packet just before it is sent (encrypted forwarders only). */
  readonly sealers: (PacketSealer | undefined)[];
  count = 0;
  generation = 0;
  private flushScheduled = false;

  constructor(
    private readonly socket: DatagramSocket,
    private readonly counters: Counters,
    readonly slotSize: number,
    readonly slots = 64,
  ) {
    this.buf = Buffer.alloc(slotSize * slots);
    this.offsets = new Int32Array(slots);
    this.lengths = new Int32Array(slots);
    this.addrs = new Uint32Array(slots * 2);
    this.sealers = new Array<PacketSealer | undefined>(slots).fill(undefined);
    for (let i = 0; i < slots; i++) this.offsets[i] = i * slotSize;
  }

  /** Reserves an empty packet for ip:port and returns its slot index. */
  open(ip: number, port: number, sealer?: PacketSealer): number {
    if (this.count === this.slots) this.flush();
    const slot = this.count++;
    this.lengths[slot] = 0;
    this.sealers[slot] = sealer;
    this.addrs[2 * slot] = ip;
    this.addrs[2 * slot + 1] = port;
    return slot;
  }

  flush(): void {
    const count = this.count;
    if (count === 0) return;
    this.count = 0;
    this.generation++;
    for (let i = 0; i < count; i++) {
      const sealer = this.sealers[i];
      if (sealer === undefined) continue;
      sealer.seal(this.buf, this.offsets[i]!, this.lengths[i]!);
      this.sealers[i] = undefined;
    }
    const sent = this.socket.sendBatch(this.buf, this.offsets, this.lengths, this.addrs, count);
    this.counters.sleeve_tx_packets += sent;
    this.counters.sleeve_tx_dropped += count - sent;
  }

  /** For sends outside an input batch (timers): one flush on the next turn of the loop. */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }
}
