import type { Network } from "./network.js";

/**
 * A local port of the switch (a TAP device, or a fake one in tests). Output is queued and
 * written in one batch at the end of each input batch: `enqueue` may keep a reference to
 * `buf`, which the caller leaves untouched until `flush`.
 */
export interface LocalPort {
  readonly name: string;
  readonly network: Network;
  /** An attached endpoint's anti-spoofing check: a frame it refuses never enters the switch. */
  readonly guard?: { permits(buf: Buffer, offset: number, length: number): boolean } | undefined;
  enqueue(buf: Buffer, offset: number, length: number): void;
  flush(): void;
}
