/**
 * Pure netlink message codec: `struct nlmsghdr` framing and `struct nlattr` TLVs
 * (linux/netlink.h). No I/O here; a socket layer sends what `MessageBuilder` builds and feeds
 * received datagrams to `parseMessages`.
 *
 * Byte order: netlink headers and attribute headers are in *host* byte order. weft only runs
 * the fast datapath on little-endian hosts (x86_64, arm64), so every host-order field is
 * written and read explicitly as little-endian. Attributes the kernel defines as network order
 * (ports, some addresses) use the `*be` helpers.
 *
 * Every length read from a buffer is checked against the bytes actually present; malformed
 * input raises `NetlinkError`, never a RangeError or an out-of-bounds read.
 */

// nlmsghdr types (linux/netlink.h)
export const NLMSG_NOOP = 0x1;
export const NLMSG_ERROR = 0x2;
export const NLMSG_DONE = 0x3;
export const NLMSG_OVERRUN = 0x4;
/** Types below this are reserved control messages. */
export const NLMSG_MIN_TYPE = 0x10;

// nlmsghdr flags
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP_FILTERED = 0x20;
// GET modifiers
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_ATOMIC = 0x400;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
// NEW modifiers
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
// DELETE modifiers
export const NLM_F_NONREC = 0x100;
export const NLM_F_BULK = 0x200;
// ACK modifiers
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

export const NLMSG_ALIGNTO = 4;
export const NLMSG_HDRLEN = 16;

// nlattr
export const NLA_F_NESTED = 1 << 15;
export const NLA_F_NET_BYTEORDER = 1 << 14;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;
export const NLA_ALIGNTO = 4;
export const NLA_HDRLEN = 4;

// enum nlmsgerr_attrs (extended ACK TLVs)
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

/** Default cap on attributes accepted from one attribute stream. */
export const MAX_ATTRIBUTES = 4096;

// Arithmetic, not bitwise: lengths read from the kernel (or a fuzzer) can exceed 2^31, where
// `&` would wrap them negative.
export function nlmsgAlign(len: number): number {
  return Math.ceil(len / NLMSG_ALIGNTO) * NLMSG_ALIGNTO;
}

export function nlaAlign(len: number): number {
  return Math.ceil(len / NLA_ALIGNTO) * NLA_ALIGNTO;
}

export type NetlinkErrorCode =
  | "truncated" // a header or declared length runs past the available bytes
  | "bad-length" // a declared length is smaller than its own header
  | "too-many" // attribute count bound exceeded
  | "bad-value" // an attribute payload has the wrong size or content
  | "missing" // a required attribute or field is absent
  | "bad-range"; // caller passed an invalid [start, end) window

/** Raised for every malformed input the parsers reject. */
export class NetlinkError extends Error {
  readonly code: NetlinkErrorCode;
  constructor(code: NetlinkErrorCode, message: string) {
    super(message);
    this.name = "NetlinkError";
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// Builder

const INITIAL_CAPACITY = 256;

function checkUint(value: number, bits: 8 | 16 | 32, what: string): void {
  const max = 2 ** bits - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what}: ${value} is not an unsigned ${bits}-bit integer`);
  }
}

function checkAttrType(type: number): void {
  checkUint(type, 16, "attribute type");
  if ((type & ~NLA_TYPE_MASK & 0xffff) !== 0) {
    throw new RangeError(`attribute type ${type} carries flag bits; use beginNested()`);
  }
}

/** Opaque handle returned by `beginNested`, consumed by `endNested`. */
export interface NestToken {
  readonly offset: number;
}

/**
 * Builds one netlink message: the 16-byte nlmsghdr (length patched at `build()`), optional
 * fixed family headers (`struct`), and attributes padded to NLA_ALIGNTO with zero bytes.
 */
export class MessageBuilder {
  private buf: Buffer;
  private len: number;
  private readonly open: number[] = [];

  constructor(type: number, flags: number, seq = 0, pid = 0) {
    checkUint(type, 16, "nlmsg_type");
    checkUint(flags, 16, "nlmsg_flags");
    checkUint(seq, 32, "nlmsg_seq");
    checkUint(pid, 32, "nlmsg_pid");
    this.buf = Buffer.alloc(INITIAL_CAPACITY);
    this.buf.writeUInt16LE(type, 4);
    this.buf.writeUInt16LE(flags, 6);
    this.buf.writeUInt32LE(seq, 8);
    this.buf.writeUInt32LE(pid, 12);
    this.len = NLMSG_HDRLEN;
  }

  /** Current length in bytes (header included). */
  get length(): number {
    return this.len;
  }

  private reserve(n: number): number {
    const need = this.len + n;
    if (need > 0xffffffff) throw new RangeError("netlink message too large");
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const next = Buffer.alloc(cap);
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const at = this.len;
    this.len = need;
    return at;
  }

  /** Appends a fixed family header (ifinfomsg, ndmsg, ...), zero-padded to 4 bytes. */
  struct(bytes: Uint8Array): this {
    const at = this.reserve(nlmsgAlign(bytes.length));
    this.buf.set(bytes, at);
    return this;
  }

  /** Appends one attribute with the given payload; padding is zero. */
  bytes(type: number, payload: Uint8Array): this {
    checkAttrType(type);
    const nlaLen = NLA_HDRLEN + payload.length;
    if (nlaLen > 0xffff) throw new RangeError(`attribute ${type} too long (${nlaLen})`);
    const at = this.reserve(nlaAlign(nlaLen));
    this.buf.writeUInt16LE(nlaLen, at);
    this.buf.writeUInt16LE(type, at + 2);
    this.buf.set(payload, at + NLA_HDRLEN);
    return this;
  }

  /** Zero-length attribute (NLA_FLAG). */
  flag(type: number): this {
    return this.bytes(type, Buffer.alloc(0));
  }

  u8(type: number, value: number): this {
    checkUint(value, 8, `attribute ${type}`);
    return this.bytes(type, Buffer.of(value));
  }

  u16(type: number, value: number): this {
    checkUint(value, 16, `attribute ${type}`);
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value, 0);
    return this.bytes(type, b);
  }

  u32(type: number, value: number): this {
    checkUint(value, 32, `attribute ${type}`);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value, 0);
    return this.bytes(type, b);
  }

  /** Network byte order u16 (e.g. a UDP port). */
  u16be(type: number, value: number): this {
    checkUint(value, 16, `attribute ${type}`);
    const b = Buffer.alloc(2);
    b.writeUInt16BE(value, 0);
    return this.bytes(type, b);
  }

  /** Network byte order u32. */
  u32be(type: number, value: number): this {
    checkUint(value, 32, `attribute ${type}`);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(value, 0);
    return this.bytes(type, b);
  }

  /** NUL-terminated UTF-8 string (NLA_NUL_STRING / NLA_STRING). */
  string(type: number, value: string): this {
    const s = Buffer.from(value, "utf8");
    if (s.includes(0)) throw new RangeError(`attribute ${type}: string contains NUL`);
    const b = Buffer.alloc(s.length + 1);
    s.copy(b, 0);
    return this.bytes(type, b);
  }

  /** Opens a nested attribute (type | NLA_F_NESTED); close it with `endNested`. */
  beginNested(type: number): NestToken {
    checkAttrType(type);
    const at = this.reserve(NLA_HDRLEN);
    this.buf.writeUInt16LE(type | NLA_F_NESTED, at + 2);
    this.open.push(at);
    return { offset: at };
  }

  endNested(token: NestToken): this {
    const top = this.open[this.open.length - 1];
    if (top !== token.offset) throw new Error("endNested: token is not the innermost open nest");
    this.open.pop();
    const nlaLen = this.len - token.offset;
    if (nlaLen > 0xffff) throw new RangeError(`nested attribute too long (${nlaLen})`);
    this.buf.writeUInt16LE(nlaLen, token.offset);
    return this;
  }

  /** `beginNested` + `fill(this)` + `endNested`. */
  nested(type: number, fill: (b: this) => void): this {
    const token = this.beginNested(type);
    fill(this);
    return this.endNested(token);
  }

  /** Returns a copy of the finished message with nlmsg_len filled in. */
  build(): Buffer {
    if (this.open.length !== 0) throw new Error("build: unclosed nested attribute");
    const out = Buffer.from(this.buf.subarray(0, this.len));
    out.writeUInt32LE(this.len, 0);
    return out;
  }
}

/** Rewrites nlmsg_seq of an already built message in place (for a socket layer). */
export function setMessageSeq(msg: Buffer, seq: number): void {
  checkUint(seq, 32, "nlmsg_seq");
  if (msg.length < NLMSG_HDRLEN) throw new RangeError("not a netlink message");
  msg.writeUInt32LE(seq, 8);
}

// ---------------------------------------------------------------------------------------------
// Attribute parsing

export interface NetlinkAttribute {
  /** Type with NLA_F_NESTED / NLA_F_NET_BYTEORDER masked off. */
  readonly type: number;
  readonly nested: boolean;
  readonly netByteOrder: boolean;
  /** Payload (header and padding excluded); a view into the parsed buffer. */
  readonly value: Buffer;
}

function checkWindow(buf: Buffer, start: number, end: number): void {
  if (
    !Number.isInteger(start) ||
    !Number.isInteger(end) ||
    start < 0 ||
    end < start ||
    end > buf.length
  ) {
    throw new NetlinkError("bad-range", `bad attribute window [${start}, ${end}) of ${buf.length}`);
  }
}

/**
 * A parsed attribute stream with typed, length-checked getters. Getters return `undefined`
 * when the attribute is absent, the `require*` variants throw NetlinkError("missing").
 * When an attribute type repeats, getters use the first occurrence; `all(type)` returns all.
 */
export class AttributeList {
  readonly list: readonly NetlinkAttribute[];

  constructor(list: readonly NetlinkAttribute[]) {
    this.list = list;
  }

  get size(): number {
    return this.list.length;
  }

  has(type: number): boolean {
    return this.list.some((a) => a.type === type);
  }

  get(type: number): Buffer | undefined {
    return this.list.find((a) => a.type === type)?.value;
  }

  all(type: number): Buffer[] {
    return this.list.filter((a) => a.type === type).map((a) => a.value);
  }

  private sized(type: number, size: number): Buffer | undefined {
    const v = this.get(type);
    if (v !== undefined && v.length !== size) {
      throw new NetlinkError(
        "bad-value",
        `attribute ${type}: expected ${size} bytes, got ${v.length}`,
      );
    }
    return v;
  }

  u8(type: number): number | undefined {
    return this.sized(type, 1)?.readUInt8(0);
  }

  u16(type: number): number | undefined {
    return this.sized(type, 2)?.readUInt16LE(0);
  }

  u32(type: number): number | undefined {
    return this.sized(type, 4)?.readUInt32LE(0);
  }

  u16be(type: number): number | undefined {
    return this.sized(type, 2)?.readUInt16BE(0);
  }

  u32be(type: number): number | undefined {
    return this.sized(type, 4)?.readUInt32BE(0);
  }

  /** String up to the first NUL (or the whole payload if unterminated). */
  string(type: number): string | undefined {
    const v = this.get(type);
    if (v === undefined) return undefined;
    const nul = v.indexOf(0);
    return v.toString("utf8", 0, nul === -1 ? v.length : nul);
  }

  /** Parses the payload of `type` as a nested attribute stream. */
  nested(type: number, maxCount = MAX_ATTRIBUTES): AttributeList | undefined {
    const v = this.get(type);
    return v === undefined ? undefined : parseAttributes(v, 0, v.length, maxCount);
  }

  requireU32(type: number): number {
    return required(this.u32(type), type);
  }

  requireString(type: number): string {
    return required(this.string(type), type);
  }
}

function required<T>(v: T | undefined, type: number): T {
  if (v === undefined) throw new NetlinkError("missing", `required attribute ${type} missing`);
  return v;
}

/**
 * Parses the attributes in `buf[start, end)`. Each nla_len must be >= 4 and fit the window;
 * the last attribute may omit its trailing padding. At most `maxCount` attributes.
 */
export function parseAttributes(
  buf: Buffer,
  start = 0,
  end = buf.length,
  maxCount = MAX_ATTRIBUTES,
): AttributeList {
  checkWindow(buf, start, end);
  const list: NetlinkAttribute[] = [];
  let off = start;
  while (off < end) {
    if (end - off < NLA_HDRLEN) {
      throw new NetlinkError("truncated", `attribute header truncated at ${off}`);
    }
    const nlaLen = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    if (nlaLen < NLA_HDRLEN) {
      throw new NetlinkError("bad-length", `nla_len ${nlaLen} < ${NLA_HDRLEN} at ${off}`);
    }
    if (nlaLen > end - off) {
      throw new NetlinkError("truncated", `nla_len ${nlaLen} overruns window at ${off}`);
    }
    if (list.length >= maxCount) {
      throw new NetlinkError("too-many", `more than ${maxCount} attributes`);
    }
    list.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      netByteOrder: (rawType & NLA_F_NET_BYTEORDER) !== 0,
      value: buf.subarray(off + NLA_HDRLEN, off + nlaLen),
    });
    off = Math.min(end, off + nlaAlign(nlaLen));
  }
  return new AttributeList(list);
}

// ---------------------------------------------------------------------------------------------
// Message parsing

export interface NetlinkAck {
  /** Raw `nlmsgerr.error`: 0 for an ACK, a negative errno on failure. */
  readonly error: number;
  /** Positive errno (0 for an ACK). */
  readonly errno: number;
  /** Header of the request this answers. */
  readonly originalSeq: number;
  readonly originalType: number;
  readonly originalPid: number;
  /** NLMSGERR_ATTR_MSG from an extended ACK, if present. */
  readonly extAckMessage?: string;
}

export interface NetlinkMessage {
  /** nlmsg_len as declared (header included). */
  readonly length: number;
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  /** Bytes after the 16-byte header, up to nlmsg_len; a view into the parsed buffer. */
  readonly payload: Buffer;
  /** Set for NLMSG_ERROR messages. */
  readonly ack?: NetlinkAck;
  /** For NLMSG_DONE carrying an int status (dumps report errors here); else undefined. */
  readonly doneStatus?: number;
}

function parseAck(payload: Buffer, flags: number): NetlinkAck {
  if (payload.length < 4 + NLMSG_HDRLEN) {
    throw new NetlinkError("truncated", `NLMSG_ERROR payload ${payload.length} < 20`);
  }
  const error = payload.readInt32LE(0);
  if (error > 0) throw new NetlinkError("bad-value", `NLMSG_ERROR with positive error ${error}`);
  const originalLen = payload.readUInt32LE(4);
  const ack = {
    error,
    errno: error === 0 ? 0 : -error,
    originalType: payload.readUInt16LE(8),
    originalSeq: payload.readUInt32LE(12),
    originalPid: payload.readUInt32LE(16),
  };
  if ((flags & NLM_F_ACK_TLVS) === 0) return ack;
  // Extended ACK TLVs follow the echoed request (only its header when capped or on success).
  const echoed = (flags & NLM_F_CAPPED) !== 0 || error === 0 ? NLMSG_HDRLEN : originalLen;
  if (echoed < NLMSG_HDRLEN) {
    throw new NetlinkError("bad-length", `echoed nlmsg_len ${echoed} < ${NLMSG_HDRLEN}`);
  }
  const tlvStart = 4 + nlmsgAlign(echoed);
  if (tlvStart > payload.length) {
    throw new NetlinkError("truncated", "extended ACK overruns NLMSG_ERROR payload");
  }
  const attrs = parseAttributes(payload, tlvStart, payload.length);
  const msg = attrs.string(NLMSGERR_ATTR_MSG);
  return msg === undefined ? ack : { ...ack, extAckMessage: msg };
}

/**
 * Splits a received datagram into netlink messages. Each nlmsg_len must be >= 16 and fit the
 * remaining bytes; messages are NLMSG_ALIGNTO aligned (the final one may omit padding).
 * NLMSG_ERROR payloads are decoded into `ack`; NLMSG_DONE messages are returned as-is
 * (callers stop a dump on them). The count is bounded by buf.length / 16.
 */
export function parseMessages(buf: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off < buf.length) {
    const remaining = buf.length - off;
    if (remaining < NLMSG_HDRLEN) {
      throw new NetlinkError("truncated", `nlmsghdr truncated at ${off} (${remaining} bytes)`);
    }
    const length = buf.readUInt32LE(off);
    if (length < NLMSG_HDRLEN) {
      throw new NetlinkError("bad-length", `nlmsg_len ${length} < ${NLMSG_HDRLEN} at ${off}`);
    }
    if (length > remaining) {
      throw new NetlinkError("truncated", `nlmsg_len ${length} overruns ${remaining} bytes`);
    }
    const type = buf.readUInt16LE(off + 4);
    const flags = buf.readUInt16LE(off + 6);
    const seq = buf.readUInt32LE(off + 8);
    const pid = buf.readUInt32LE(off + 12);
    const payload = buf.subarray(off + NLMSG_HDRLEN, off + length);
    const base = { length, type, flags, seq, pid, payload };
    if (type === NLMSG_ERROR) {
      out.push({ ...base, ack: parseAck(payload, flags) });
    } else if (type === NLMSG_DONE && payload.length >= 4) {
      out.push({ ...base, doneStatus: payload.readInt32LE(0) });
    } else {
      out.push(base);
    }
    off += Math.min(remaining, nlmsgAlign(length));
  }
  return out;
}
