/**
 * IPv4 dotted quads: the one reader every part of weft uses, so that an address the CLI accepts
 * is one the netlink codec, iptables and the policy model accept too. Exactly four decimal
 * octets 0..255 without leading zeros (as Go's `net.ParseIP` since Go 1.17, and because
 * iptables reads a leading zero as octal).
 */

const OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/** The address as a uint32 (first octet most significant), or why `text` is not a dotted quad. */
export function readIpv4(text: string): number | string {
  if (text.length > 15) return "want a dotted quad like 10.32.0.1";
  const parts = text.split(".");
  if (parts.length !== 4) return "want a dotted quad like 10.32.0.1";
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part)) return `octet ${JSON.stringify(part)} is not a number 0..255`;
    const octet = Number(part);
    if (octet > 255) return `octet ${part} is above 255`;
    value = value * 256 + octet;
  }
  return value;
}

/** The address as a uint32, or undefined when `text` is not a dotted quad. */
export function parseIpv4(text: string): number | undefined {
  const result = readIpv4(text);
  return typeof result === "string" ? undefined : result;
}

/** A uint32 as a dotted quad. */
export function formatIpv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 0xff}.${(value >>> 8) & 0xff}.${value & 0xff}`;
}
