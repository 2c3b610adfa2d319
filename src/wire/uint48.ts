/**
 * 48-bit big-endian numbers, the shape of both MAC addresses and Weave peer names. A double
 * holds 48 bits exactly, so they live as plain numbers: cheap to read per frame, usable as keys.
 */

export function readUint48(buf: Uint8Array, offset: number): number {
  return (
    buf[offset]! * 2 ** 40 +
    buf[offset + 1]! * 2 ** 32 +
    ((buf[offset + 2]! << 24) >>> 0) +
    (buf[offset + 3]! << 16) +
    (buf[offset + 4]! << 8) +
    buf[offset + 5]!
  );
}

export function writeUint48(buf: Uint8Array, offset: number, value: number): void {
  const high = Math.floor(value / 2 ** 32);
  const low = value >>> 0;
  buf[offset] = (high >>> 8) & 0xff;
  buf[offset + 1] = high & 0xff;
  buf[offset + 2] = (low >>> 24) & 0xff;
  buf[offset + 3] = (low >>> 16) & 0xff;
  buf[offset + 4] = (low >>> 8) & 0xff;
  buf[offset + 5] = low & 0xff;
}

/** Six lower-case hex octets joined by colons, as Go's net.HardwareAddr prints them. */
export function formatUint48(value: number): string {
  const out: string[] = [];
  for (let shift = 40; shift >= 0; shift -= 8) {
    out.push((Math.floor(value / 2 ** shift) % 256).toString(16).padStart(2, "0"));
  }
  return out.join(":");
}
