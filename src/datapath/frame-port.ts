import type { LocalPort } from "../switch/port.js";

/** A local port that reads frames by itself (a TAP), as the data plane drives it. */
export interface FramePort extends LocalPort {
  start(): void;
  close(): void;
  /** Set by a write: the kernel may have answered at once (ARP, ping, TCP ACKs). */
  readonly wroteSinceRead: boolean;
  /** Reads what is waiting now, without waiting for the poller. */
  readPending(): void;
}

/** Where a port hands what it reads, and says that it broke. */
export interface FramePortSink {
  frames(port: FramePort, buf: Buffer, slotSize: number, lengths: Int32Array, count: number): void;
  failed(port: FramePort, error: Error): void;
}
