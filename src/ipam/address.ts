/**
 * IPv4 addresses and ranges for IPAM (spec 8, 8.1): dotted quads ↔ uint32 `Address`, CIDRs,
 * half-open `Range`s and the checks `--ipalloc-range` / `--ipalloc-default-subnet` and subnet
 * requests need. Everything is checked: a value that is not a uint32 address, or a range that is
 * not `start <= end`, throws a RangeError naming it; nothing returns NaN or a negative size.
 *
 * A `Range` is `[start, end)`. Its `end` may be 2^32 (one past 255.255.255.255) in these helpers,
 * but such a range cannot travel on the wire (Go's `address.Address` is a uint32 and would wrap
 * to 0), so `parseCidr` refuses subnets that reach the top of the address space.
 */

import { readIpv4 } from "../wire/ipv4.js";
import type { Address, Range } from "./types.js";

/** 2^32: one past the last address. */
export const ADDRESS_SPACE_END = 2 ** 32;
/** 255.255.255.255. */
export const MAX_ADDRESS = ADDRESS_SPACE_END - 1;
/** Spec 8.1: the universe and any subnet must hold at least this many addresses (prefix ≤ 30). */
export const MIN_SUBNET_ADDRESSES = 4;

/** An address with a prefix length, e.g. `10.32.0.1/12` (host bits may be set). */
export interface Cidr {
  address: Address;
  /** 0..32. */
  prefixLength: number;
}

/** True for an integer in 0..2^32-1. */
export function isAddress(value: unknown): value is Address {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_ADDRESS;
}

function checkAddress(value: unknown, what: string): Address {
  if (!isAddress(value)) {
    throw new RangeError(`${what} ${describe(value)} is not an IPv4 address (uint32)`);
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  return typeof value;
}

/**
 * Checks that `range` is a `Range`: `start` an address, `end` an integer with
 * `start <= end <= 2^32`. Returns it. Throws RangeError.
 */
export function checkRange(range: Range, what = "range"): Range {
  if (typeof range !== "object" || range === null) {
    throw new RangeError(`${what} is not a range (got ${describe(range)})`);
  }
  const start = checkAddress(range.start, `${what} start`);
  const end = range.end;
  if (typeof end !== "number" || !Number.isInteger(end) || end < 0 || end > ADDRESS_SPACE_END) {
    throw new RangeError(`${what} end ${describe(end)} is not an address or 2^32`);
  }
  if (end < start) {
    throw new RangeError(
      `${what} [${formatAddress(start)}, ${formatEnd(end)}) ends before it starts`,
    );
  }
  return range;
}

// --- Dotted quads (read by wire/ipv4.ts)

/**
 * Parses a dotted quad (`198.18.128.0`) into a uint32, first octet most significant. Exactly
 * four decimal octets 0..255 without leading zeros (as Go's `net.ParseIP` since Go 1.17: a
 * leading zero could mean octal elsewhere). Throws Error with a message naming `what` and the
 * text.
 */
export function parseAddress(text: string, what = "IP address"): Address {
  if (typeof text !== "string") throw new Error(`invalid ${what} ${describe(text)}: not a string`);
  const result = readIpv4(text);
  if (typeof result === "string")
    throw new Error(`invalid ${what} ${JSON.stringify(text)}: ${result}`);
  return result;
}

/** Formats a uint32 address as a dotted quad. Throws RangeError if it is not a uint32. */
export function formatAddress(address: Address): string {
  checkAddress(address, "address");
  return `${Math.floor(address / 2 ** 24)}.${Math.floor(address / 2 ** 16) % 256}.${
    Math.floor(address / 256) % 256
  }.${address % 256}`;
}

/** `end` of a range, which may be 2^32. */
function formatEnd(end: number): string {
  return end === ADDRESS_SPACE_END ? "2^32" : formatAddress(end);
}

// --- CIDRs

/**
 * Parses `a.b.c.d/len` (len 0..32, decimal, no leading zeros). Host bits may be set (a claim's
 * `ip/len`); use `parseCidr` for a network. Throws Error naming `what` and the text.
 */
export function parseCidrAddress(text: string, what = "CIDR"): Cidr {
  if (typeof text !== "string") {
    throw new Error(`invalid ${what} ${describe(text)}: not a string`);
  }
  const slash = text.indexOf("/");
  if (slash < 0) throw new Error(`invalid ${what} ${JSON.stringify(text)}: want a.b.c.d/len`);
  const address = readIpv4(text.slice(0, slash));
  if (typeof address === "string") {
    throw new Error(`invalid ${what} ${JSON.stringify(text)}: ${address}`);
  }
  const len = text.slice(slash + 1);
  if (!/^(?:[0-9]|[12][0-9]|3[0-2])$/.test(len)) {
    throw new Error(`invalid ${what} ${JSON.stringify(text)}: prefix length must be 0..32`);
  }
  return { address, prefixLength: Number(len) };
}

/** `a.b.c.d/len`. Throws RangeError on a bad address or prefix length. */
export function formatCidr(cidr: Cidr): string {
  checkPrefixLength(cidr.prefixLength);
  return `${formatAddress(cidr.address)}/${cidr.prefixLength}`;
}

function checkPrefixLength(prefixLength: number): void {
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
    throw new RangeError(`prefix length ${describe(prefixLength)} is not 0..32`);
  }
}

/** Number of addresses in a /len: 2^(32-len). */
export function prefixSize(prefixLength: number): number {
  checkPrefixLength(prefixLength);
  return 2 ** (32 - prefixLength);
}

/** The network address of `cidr` (host bits cleared). */
export function networkAddress(cidr: Cidr): Address {
  checkAddress(cidr.address, "address");
  const size = prefixSize(cidr.prefixLength);
  return cidr.address - (cidr.address % size);
}

/**
 * The whole subnet of `cidr` as a range `[network, broadcast + 1)` (spec 8.3.3: a space request
 * for a subnet carries all of it). `end` may be 2^32 here.
 */
export function cidrRange(cidr: Cidr): Range {
  const start = networkAddress(cidr);
  return { start, end: start + prefixSize(cidr.prefixLength) };
}

/**
 * Parses and validates a subnet as spec 8.1 requires of `--ipalloc-range`,
 * `--ipalloc-default-subnet` and subnet requests: host bits zero, at least 4 addresses (prefix
 * length at most 30), and not reaching past 255.255.255.255 (Weave's uint32 range end would wrap).
 * `what` names the flag or parameter in the error, e.g. `--ipalloc-range`.
 */
export function parseCidr(text: string, what = "subnet"): Range {
  const cidr = parseCidrAddress(text, what);
  const quoted = JSON.stringify(text);
  const network = networkAddress(cidr);
  if (network !== cidr.address) {
    throw new Error(
      `invalid ${what} ${quoted}: host bits are set (the network is ${formatCidr({
        address: network,
        prefixLength: cidr.prefixLength,
      })})`,
    );
  }
  const size = prefixSize(cidr.prefixLength);
  if (size < MIN_SUBNET_ADDRESSES) {
    throw new Error(
      `invalid ${what} ${quoted}: ${size} address${size === 1 ? "" : "es"}, ` +
        `at least ${MIN_SUBNET_ADDRESSES} are needed (prefix length at most 30)`,
    );
  }
  if (network + size > MAX_ADDRESS) {
    throw new Error(
      `invalid ${what} ${quoted}: a range that includes 255.255.255.255 cannot be used`,
    );
  }
  return { start: network, end: network + size };
}

// --- Ranges

/** Number of addresses in the range (0 for an empty one). */
export function rangeSize(range: Range): number {
  checkRange(range);
  return range.end - range.start;
}

/** True if `address` is in `[start, end)`. */
export function rangeContains(range: Range, address: Address): boolean {
  checkRange(range);
  checkAddress(address, "address");
  return address >= range.start && address < range.end;
}

/** True if `inner` lies entirely within `outer` (an empty `inner` lies within anything). */
export function rangeContainsRange(outer: Range, inner: Range): boolean {
  checkRange(outer, "outer range");
  checkRange(inner, "inner range");
  return inner.start === inner.end || (inner.start >= outer.start && inner.end <= outer.end);
}

/** True if the two ranges share at least one address (empty ranges overlap nothing). */
export function rangesOverlap(a: Range, b: Range): boolean {
  checkRange(a, "first range");
  checkRange(b, "second range");
  return a.start < a.end && b.start < b.end && a.start < b.end && b.start < a.end;
}

/** `start-end` with `end` inclusive, as Weave prints ranges (`198.18.128.0-198.18.191.255`). */
export function formatRange(range: Range): string {
  checkRange(range);
  if (range.start === range.end) return `${formatAddress(range.start)} (empty)`;
  return `${formatAddress(range.start)}-${formatAddress(range.end - 1)}`;
}
