/**
 * A checked, allocation-free reader of the IPv4 part of an Ethernet frame, for network policy.
 *
 * `parseFrame` reads a frame in place (at an offset inside a larger buffer) into a caller-owned
 * `ParsedPacket`, which the caller allocates once and reuses for every frame: nothing is
 * allocated per frame. It never throws and never reads outside `[offset, offset + length)`;
 * every length field is checked against what is really there, and a frame that is truncated or
 * malformed yields `PARSE_MALFORMED`. Frames that are well-formed but not IPv4 (ARP, IPv6, a
 * second VLAN tag, ...) yield `PARSE_NOT_IPV4`, so that the caller can tell "not mine" from
 * "broken".
 *
 * What it reads:
 *  - the EtherType, skipping one 802.1Q tag (0x8100) whose VLAN id is reported;
 *  - the IPv4 header: IHL, total length, identification, fragment offset and MF, protocol,
 *    source and destination as unsigned 32-bit numbers. The header checksum is not verified
 *    (the receiving stack does that); the version, IHL and lengths are;
 *  - for TCP, UDP and SCTP: the ports (and the TCP flags), unless the packet is a non-first
 *    fragment, which carries no transport header;
 *  - for ICMP: type and code; the identifier of queries (echo, timestamp, information, address
 *    mask); and for errors (destination unreachable, time exceeded, parameter problem) the
 *    embedded original header: its addresses, protocol, ports (or ICMP type and identifier)
 *    and fragment offset. An error without a readable embedded header is malformed.
 */
import { ETHERTYPE_8021Q, ETH_HEADER_LEN, VLAN_TAG_LEN } from "../wire/ethernet.js";

export const PARSE_OK = 0;
/** Well-formed as far as read, but not IPv4 (after at most one 802.1Q tag). */
export const PARSE_NOT_IPV4 = 1;
/** Truncated or malformed: the frame claims more than it holds, or a field is impossible. */
export const PARSE_MALFORMED = 2;
export type ParseStatus = typeof PARSE_OK | typeof PARSE_NOT_IPV4 | typeof PARSE_MALFORMED;

export const ETHERTYPE_IPV4 = 0x0800;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_SCTP = 132;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAMETER_PROBLEM = 12;
export const ICMP_TIMESTAMP_REQUEST = 13;
export const ICMP_TIMESTAMP_REPLY = 14;
export const ICMP_INFO_REQUEST = 15;
export const ICMP_INFO_REPLY = 16;
export const ICMP_ADDRESS_MASK_REQUEST = 17;
export const ICMP_ADDRESS_MASK_REPLY = 18;

const IPV4_MIN_HEADER_LEN = 20;
const TCP_MIN_HEADER_LEN = 20;
const UDP_HEADER_LEN = 8;
const SCTP_COMMON_HEADER_LEN = 12;
const ICMP_HEADER_LEN = 8;
const IP_MF = 0x2000;
const IP_OFFSET_MASK = 0x1fff;

/** For an ICMP query or reply type, the request type of its exchange; -1 for other types. */
export function icmpRequestType(type: number): number {
  switch (type) {
    case ICMP_ECHO_REQUEST:
    case ICMP_ECHO_REPLY:
      return ICMP_ECHO_REQUEST;
    case ICMP_TIMESTAMP_REQUEST:
    case ICMP_TIMESTAMP_REPLY:
      return ICMP_TIMESTAMP_REQUEST;
    case ICMP_INFO_REQUEST:
    case ICMP_INFO_REPLY:
      return ICMP_INFO_REQUEST;
    case ICMP_ADDRESS_MASK_REQUEST:
    case ICMP_ADDRESS_MASK_REPLY:
      return ICMP_ADDRESS_MASK_REQUEST;
    default:
      return -1;
  }
}

/** True for the ICMP error types that carry the header of the packet they are about. */
export function isIcmpErrorType(type: number): boolean {
  return (
    type === ICMP_DEST_UNREACHABLE || type === ICMP_TIME_EXCEEDED || type === ICMP_PARAMETER_PROBLEM
  );
}

/**
 * The parsed fields of one frame. Every field is a number or a boolean, always present, so that
 * the object keeps one shape; fields that do not apply hold -1 (or false). Only meaningful after
 * `parseFrame` returned `PARSE_OK` (which it also stores in `status`).
 */
export class ParsedPacket {
  status: ParseStatus = PARSE_MALFORMED;
  /** 802.1Q VLAN id of the (single, skipped) tag; -1 when untagged. */
  vlan = -1;
  /** EtherType after the VLAN tag. */
  etherType = -1;
  /** Offset of the IPv4 header in the buffer. */
  l3Offset = -1;
  /** IPv4 header length in bytes (IHL * 4). */
  headerLength = 0;
  /** IPv4 total length (header and payload); any Ethernet padding after it is ignored. */
  totalLength = 0;
  /** IPv4 identification, which ties the fragments of one datagram together. */
  ipId = 0;
  protocol = -1;
  /** Source address as an unsigned 32-bit number (10.0.0.1 is 0x0a000001). */
  src = 0;
  dst = 0;
  /** Fragment offset in 8-byte units: non-zero for every fragment but the first. */
  fragmentOffset = 0;
  moreFragments = false;
  /** Offset of the transport header in the buffer; -1 for non-first fragments. */
  l4Offset = -1;
  /** True when srcPort and dstPort hold TCP, UDP or SCTP ports. */
  hasPorts = false;
  srcPort = -1;
  dstPort = -1;
  /** TCP flags byte (FIN 0x01 .. CWR 0x80); -1 when not TCP. */
  tcpFlags = -1;
  icmpType = -1;
  icmpCode = -1;
  /** Identifier of an ICMP query or reply (echo, timestamp, ...); -1 otherwise. */
  icmpId = -1;
  /** True for ICMP errors, whose embedded original header is in the inner* fields. */
  isIcmpError = false;
  innerProtocol = -1;
  innerSrc = 0;
  innerDst = 0;
  innerFragmentOffset = 0;
  innerHasPorts = false;
  innerSrcPort = -1;
  innerDstPort = -1;
  innerIcmpType = -1;
  innerIcmpId = -1;

  /** True for a fragment other than the first: it has no transport header. */
  get isNonFirstFragment(): boolean {
    return this.fragmentOffset !== 0;
  }

  /** True for any fragment (first or not) of a fragmented datagram. */
  get isFragment(): boolean {
    return this.moreFragments || this.fragmentOffset !== 0;
  }

  /** Sets every field back to "absent" (parseFrame does this first). */
  reset(): void {
    this.vlan = -1;
    this.etherType = -1;
    this.l3Offset = -1;
    this.headerLength = 0;
    this.totalLength = 0;
    this.ipId = 0;
    this.protocol = -1;
    this.src = 0;
    this.dst = 0;
    this.fragmentOffset = 0;
    this.moreFragments = false;
    this.l4Offset = -1;
    this.hasPorts = false;
    this.srcPort = -1;
    this.dstPort = -1;
    this.tcpFlags = -1;
    this.icmpType = -1;
    this.icmpCode = -1;
    this.icmpId = -1;
    this.isIcmpError = false;
    this.innerProtocol = -1;
    this.innerSrc = 0;
    this.innerDst = 0;
    this.innerFragmentOffset = 0;
    this.innerHasPorts = false;
    this.innerSrcPort = -1;
    this.innerDstPort = -1;
    this.innerIcmpType = -1;
    this.innerIcmpId = -1;
  }
}

/**
 * Parses the frame `buf[offset, offset + length)` into `out`, returning (and storing in
 * `out.status`) whether it is IPv4 that could be read. Never throws; an offset or length that
 * does not fit the buffer is malformed.
 */
export function parseFrame(
  buf: Uint8Array,
  offset: number,
  length: number,
  out: ParsedPacket,
): ParseStatus {
  out.reset();
  const status = parse(out, buf, offset, length);
  out.status = status;
  return status;
}

function u16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

// Addresses are read inline, not through a helper: a uint32 above 2^30 returned from a
// function that V8 did not inline would be boxed in a fresh heap number, once per frame.

function parse(out: ParsedPacket, buf: Uint8Array, offset: number, length: number): ParseStatus {
  if (
    !Number.isInteger(offset) ||
    !Number.isInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > buf.length
  ) {
    return PARSE_MALFORMED;
  }
  const end = offset + length;
  if (length < ETH_HEADER_LEN) return PARSE_MALFORMED;
  let at = offset + ETH_HEADER_LEN - 2;
  let etherType = u16(buf, at);
  at += 2;
  if (etherType === ETHERTYPE_8021Q) {
    if (end - at < VLAN_TAG_LEN) return PARSE_MALFORMED;
    out.vlan = u16(buf, at) & 0x0fff;
    etherType = u16(buf, at + 2);
    at += VLAN_TAG_LEN;
  }
  out.etherType = etherType;
  if (etherType !== ETHERTYPE_IPV4) return PARSE_NOT_IPV4;

  // IPv4 header.
  if (end - at < IPV4_MIN_HEADER_LEN) return PARSE_MALFORMED;
  const versionIhl = buf[at]!;
  if (versionIhl >> 4 !== 4) return PARSE_MALFORMED;
  const headerLength = (versionIhl & 0x0f) * 4;
  if (headerLength < IPV4_MIN_HEADER_LEN) return PARSE_MALFORMED;
  const totalLength = u16(buf, at + 2);
  // The datagram must hold its own header and fit in the frame; bytes after it are padding.
  if (totalLength < headerLength || totalLength > end - at) return PARSE_MALFORMED;
  // The reserved ("evil") flag and DF are not judged: the receiving stack ignores them too.
  const flagsOffset = u16(buf, at + 6);
  const fragmentOffset = flagsOffset & IP_OFFSET_MASK;
  const moreFragments = (flagsOffset & IP_MF) !== 0;
  const protocol = buf[at + 9]!;
  out.l3Offset = at;
  out.headerLength = headerLength;
  out.totalLength = totalLength;
  out.ipId = u16(buf, at + 4);
  out.protocol = protocol;
  out.src =
    ((buf[at + 12]! << 24) | (buf[at + 13]! << 16) | (buf[at + 14]! << 8) | buf[at + 15]!) >>> 0;
  out.dst =
    ((buf[at + 16]! << 24) | (buf[at + 17]! << 16) | (buf[at + 18]! << 8) | buf[at + 19]!) >>> 0;
  out.fragmentOffset = fragmentOffset;
  out.moreFragments = moreFragments;
  if (fragmentOffset !== 0) return PARSE_OK; // no transport header in this fragment

  const l4 = at + headerLength;
  const l4Len = totalLength - headerLength;
  out.l4Offset = l4;
  switch (protocol) {
    case IPPROTO_TCP: {
      if (l4Len < TCP_MIN_HEADER_LEN) return PARSE_MALFORMED;
      const dataOffset = (buf[l4 + 12]! >> 4) * 4;
      if (dataOffset < TCP_MIN_HEADER_LEN || dataOffset > l4Len) return PARSE_MALFORMED;
      out.hasPorts = true;
      out.srcPort = u16(buf, l4);
      out.dstPort = u16(buf, l4 + 2);
      out.tcpFlags = buf[l4 + 13]!;
      return PARSE_OK;
    }
    case IPPROTO_UDP: {
      if (l4Len < UDP_HEADER_LEN) return PARSE_MALFORMED;
      // The UDP length covers the whole datagram, of which this may be only the first fragment.
      const udpLength = u16(buf, l4 + 4);
      if (udpLength < UDP_HEADER_LEN) return PARSE_MALFORMED;
      if (!moreFragments && udpLength > l4Len) return PARSE_MALFORMED;
      out.hasPorts = true;
      out.srcPort = u16(buf, l4);
      out.dstPort = u16(buf, l4 + 2);
      return PARSE_OK;
    }
    case IPPROTO_SCTP: {
      if (l4Len < SCTP_COMMON_HEADER_LEN) return PARSE_MALFORMED;
      out.hasPorts = true;
      out.srcPort = u16(buf, l4);
      out.dstPort = u16(buf, l4 + 2);
      return PARSE_OK;
    }
    case IPPROTO_ICMP:
      return parseIcmp(out, buf, l4, l4Len);
    default:
      return PARSE_OK;
  }
}

function parseIcmp(out: ParsedPacket, buf: Uint8Array, l4: number, l4Len: number): ParseStatus {
  if (l4Len < ICMP_HEADER_LEN) return PARSE_MALFORMED;
  const type = buf[l4]!;
  out.icmpType = type;
  out.icmpCode = buf[l4 + 1]!;
  if (icmpRequestType(type) !== -1) {
    out.icmpId = u16(buf, l4 + 4);
    return PARSE_OK;
  }
  if (!isIcmpErrorType(type)) return PARSE_OK;

  // The embedded header of the offending datagram, followed by (at least) 8 bytes of it. Its
  // total length describes the original datagram, not what was quoted, so it is not checked
  // against the bytes here.
  const at = l4 + ICMP_HEADER_LEN;
  const avail = l4Len - ICMP_HEADER_LEN;
  if (avail < IPV4_MIN_HEADER_LEN) return PARSE_MALFORMED;
  const versionIhl = buf[at]!;
  if (versionIhl >> 4 !== 4) return PARSE_MALFORMED;
  const headerLength = (versionIhl & 0x0f) * 4;
  if (headerLength < IPV4_MIN_HEADER_LEN || headerLength > avail) return PARSE_MALFORMED;
  const innerFragmentOffset = u16(buf, at + 6) & IP_OFFSET_MASK;
  const innerProtocol = buf[at + 9]!;
  out.isIcmpError = true;
  out.innerProtocol = innerProtocol;
  out.innerSrc =
    ((buf[at + 12]! << 24) | (buf[at + 13]! << 16) | (buf[at + 14]! << 8) | buf[at + 15]!) >>> 0;
  out.innerDst =
    ((buf[at + 16]! << 24) | (buf[at + 17]! << 16) | (buf[at + 18]! << 8) | buf[at + 19]!) >>> 0;
  out.innerFragmentOffset = innerFragmentOffset;
  if (innerFragmentOffset !== 0) return PARSE_OK;
  const inner = at + headerLength;
  const innerAvail = avail - headerLength;
  switch (innerProtocol) {
    case IPPROTO_TCP:
    case IPPROTO_UDP:
    case IPPROTO_SCTP:
      if (innerAvail < 4) return PARSE_MALFORMED;
      out.innerHasPorts = true;
      out.innerSrcPort = u16(buf, inner);
      out.innerDstPort = u16(buf, inner + 2);
      return PARSE_OK;
    case IPPROTO_ICMP: {
      if (innerAvail < ICMP_HEADER_LEN) return PARSE_MALFORMED;
      const innerType = buf[inner]!;
      out.innerIcmpType = innerType;
      if (icmpRequestType(innerType) !== -1) out.innerIcmpId = u16(buf, inner + 4);
      return PARSE_OK;
    }
    default:
      return PARSE_OK;
  }
}
