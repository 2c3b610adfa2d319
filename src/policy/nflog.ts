/**
 * Pure codec for nfnetlink_log (linux/netfilter/nfnetlink_log.h), the netlink side of
 * iptables' `-j NFLOG`: the config messages that bind a log group to a socket, and the packet
 * messages the kernel sends for each logged packet. Weave's NPC logged its drops to group 86
 * (weave-wire.md section 7); weft reads them to name the kernel path's denied flows.
 *
 * Every nfnetlink message carries a `struct nfgenmsg` (4 bytes: family, version, res_id in
 * network order) before its attributes, and its type is `(subsystem << 8) | message`.
 * nfnetlink_log's attributes are in network byte order. Malformed input raises `NetlinkError`
 * (netlink.ts), never a RangeError.
 */
import {
  MessageBuilder,
  NLM_F_ACK,
  NLM_F_REQUEST,
  NetlinkError,
  type NetlinkMessage,
  parseAttributes,
  parseMessages,
} from "../fastdp/netlink.js";

/** The netlink protocol of nfnetlink (linux/netlink.h). */
export const NETLINK_NETFILTER = 12;

// linux/netfilter/nfnetlink.h
export const NFNL_SUBSYS_ULOG = 4;
export const NFNETLINK_V0 = 0;
export const NFGENMSG_LEN = 4;

// enum nfulnl_msg_types
export const NFULNL_MSG_PACKET = 0;
export const NFULNL_MSG_CONFIG = 1;

/** nlmsg_type of a logged packet (kernel to us) and of a config request (us to the kernel). */
export const NFLOG_PACKET_TYPE = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
export const NFLOG_CONFIG_TYPE = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;

// enum nfulnl_attr_type
export const NFULA_PACKET_HDR = 1;
export const NFULA_MARK = 2;
export const NFULA_TIMESTAMP = 3;
export const NFULA_IFINDEX_INDEV = 4;
export const NFULA_IFINDEX_OUTDEV = 5;
export const NFULA_IFINDEX_PHYSINDEV = 6;
export const NFULA_IFINDEX_PHYSOUTDEV = 7;
export const NFULA_PAYLOAD = 9;
export const NFULA_PREFIX = 10;

// enum nfulnl_msg_config_cmds
export const NFULNL_CFG_CMD_NONE = 0;
export const NFULNL_CFG_CMD_BIND = 1;
export const NFULNL_CFG_CMD_UNBIND = 2;
export const NFULNL_CFG_CMD_PF_BIND = 3;
export const NFULNL_CFG_CMD_PF_UNBIND = 4;

// enum nfulnl_attr_config
export const NFULA_CFG_CMD = 1;
export const NFULA_CFG_MODE = 2;
export const NFULA_CFG_TIMEOUT = 4;

export const NFULNL_COPY_NONE = 0;
export const NFULNL_COPY_META = 1;
export const NFULNL_COPY_PACKET = 2;

export const AF_UNSPEC = 0;
export const AF_INET = 2;

/** Weave-NPC's log group for dropped flows (NFLOG_GROUP in npc/plan.ts). */
export const NPC_NFLOG_GROUP = 86;
/** The kernel's default flush timeout is 1 s; a status that lags less is worth a few wake-ups. */
export const DEFAULT_FLUSH_TIMEOUT_MS = 100;
/** Enough of a logged packet for its IPv4 header (up to 60 bytes) and the transport ports. */
export const DEFAULT_COPY_RANGE = 128;

const PACKET_HDR_LEN = 4; // struct nfulnl_msg_packet_hdr
const TIMESTAMP_LEN = 16; // struct nfulnl_msg_packet_timestamp

function checkGroup(group: number): void {
  if (!Number.isInteger(group) || group < 0 || group > 0xffff) {
    throw new RangeError(`nflog group ${group} is not in 0..65535`);
  }
}

function nfgenmsg(family: number, resId: number): Buffer {
  const b = Buffer.alloc(NFGENMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeUInt8(NFNETLINK_V0, 1);
  b.writeUInt16BE(resId, 2);
  return b;
}

/**
 * A config command: BIND/UNBIND take the group in res_id (family AF_UNSPEC); PF_BIND/PF_UNBIND
 * take the protocol family (e.g. AF_INET) and group 0. Asks for an ACK.
 */
export function buildConfigCommand(command: number, group: number, family = AF_UNSPEC): Buffer {
  checkGroup(group);
  return new MessageBuilder(NFLOG_CONFIG_TYPE, NLM_F_REQUEST | NLM_F_ACK)
    .struct(nfgenmsg(family, group))
    .bytes(NFULA_CFG_CMD, Buffer.of(command))
    .build();
}

/** Sets the copy mode of `group`: how much of each packet the kernel sends (`copyRange` bytes). */
export function buildConfigMode(group: number, copyMode: number, copyRange: number): Buffer {
  checkGroup(group);
  if (!Number.isInteger(copyRange) || copyRange < 0 || copyRange > 0xffffffff) {
    throw new RangeError(`nflog copy range ${copyRange} is not an unsigned 32-bit integer`);
  }
  // struct nfulnl_msg_config_mode: __be32 copy_range, __u8 copy_mode, __u8 _pad (packed).
  const mode = Buffer.alloc(6);
  mode.writeUInt32BE(copyRange, 0);
  mode.writeUInt8(copyMode, 4);
  return new MessageBuilder(NFLOG_CONFIG_TYPE, NLM_F_REQUEST | NLM_F_ACK)
    .struct(nfgenmsg(AF_UNSPEC, group))
    .bytes(NFULA_CFG_MODE, mode)
    .build();
}

/**
 * Sets how long the kernel may hold logged packets of `group` before sending them (it sends
 * sooner when its queue threshold fills); kept in 1/100 s.
 */
export function buildConfigTimeout(group: number, timeoutMs: number): Buffer {
  checkGroup(group);
  const hundredths = Math.ceil(timeoutMs / 10);
  if (!Number.isInteger(hundredths) || hundredths < 0 || hundredths > 0xffffffff) {
    throw new RangeError(`nflog flush timeout ${timeoutMs} ms is out of range`);
  }
  return new MessageBuilder(NFLOG_CONFIG_TYPE, NLM_F_REQUEST | NLM_F_ACK)
    .struct(nfgenmsg(AF_UNSPEC, group))
    .u32be(NFULA_CFG_TIMEOUT, hundredths)
    .build();
}

/** One logged packet. */
export interface NflogPacket {
  /** nfgen_family: AF_INET for iptables' IPv4 rules. */
  readonly family: number;
  readonly group: number;
  /** From NFULA_PACKET_HDR: the link-layer protocol (0x0800 for IPv4) and netfilter hook. */
  readonly hwProtocol: number;
  readonly hook: number;
  /** `--nflog-prefix`; "" when the rule has none. */
  readonly prefix: string;
  /** Interface indexes; absent when the hook has no such device. */
  readonly indev?: number;
  readonly outdev?: number;
  readonly physindev?: number;
  readonly physoutdev?: number;
  readonly mark?: number;
  /** ms since the epoch, when the kernel stamped the packet. */
  readonly timestamp?: number;
  /** The packet from its network header (the IPv4 header), cut at the copy range; a copy. */
  readonly payload: Uint8Array;
}

function be32(value: Buffer | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (value.length !== 4) {
    throw new NetlinkError("bad-value", `${what}: expected 4 bytes, got ${value.length}`);
  }
  return value.readUInt32BE(0);
}

function optional<K extends string>(key: K, value: number | undefined): { [k in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: number };
}

/** Parses one NFULNL_MSG_PACKET message; throws NetlinkError if it is not a well-formed one. */
export function parseNflogPacket(msg: NetlinkMessage): NflogPacket {
  if (msg.type !== NFLOG_PACKET_TYPE) {
    throw new NetlinkError("bad-value", `message type 0x${msg.type.toString(16)} is not NFLOG`);
  }
  const p = msg.payload;
  if (p.length < NFGENMSG_LEN) {
    throw new NetlinkError("truncated", `nfgenmsg truncated (${p.length} bytes)`);
  }
  const attrs = parseAttributes(p, NFGENMSG_LEN, p.length);
  const hdr = attrs.get(NFULA_PACKET_HDR);
  if (hdr === undefined) throw new NetlinkError("missing", "NFULA_PACKET_HDR missing");
  if (hdr.length < PACKET_HDR_LEN) {
    throw new NetlinkError("bad-value", `NFULA_PACKET_HDR of ${hdr.length} bytes`);
  }
  const payload = attrs.get(NFULA_PAYLOAD);
  if (payload === undefined) throw new NetlinkError("missing", "NFULA_PAYLOAD missing");
  const ts = attrs.get(NFULA_TIMESTAMP);
  if (ts !== undefined && ts.length !== TIMESTAMP_LEN) {
    throw new NetlinkError("bad-value", `NFULA_TIMESTAMP of ${ts.length} bytes`);
  }
  return {
    family: p.readUInt8(0),
    group: p.readUInt16BE(2),
    hwProtocol: hdr.readUInt16BE(0),
    hook: hdr.readUInt8(2),
    prefix: attrs.string(NFULA_PREFIX) ?? "",
    ...optional("indev", be32(attrs.get(NFULA_IFINDEX_INDEV), "NFULA_IFINDEX_INDEV")),
    ...optional("outdev", be32(attrs.get(NFULA_IFINDEX_OUTDEV), "NFULA_IFINDEX_OUTDEV")),
    ...optional("physindev", be32(attrs.get(NFULA_IFINDEX_PHYSINDEV), "NFULA_IFINDEX_PHYSINDEV")),
    ...optional(
      "physoutdev",
      be32(attrs.get(NFULA_IFINDEX_PHYSOUTDEV), "NFULA_IFINDEX_PHYSOUTDEV"),
    ),
    ...optional("mark", be32(attrs.get(NFULA_MARK), "NFULA_MARK")),
    // sec and usec are be64; as ms in a double they are exact for the next 285,000 years.
    ...optional(
      "timestamp",
      ts === undefined
        ? undefined
        : Number(ts.readBigUInt64BE(0)) * 1000 + Math.floor(Number(ts.readBigUInt64BE(8)) / 1000),
    ),
    payload: new Uint8Array(payload),
  };
}

/** What one datagram from an nflog socket held. */
export interface NflogDatagram {
  readonly packets: NflogPacket[];
  /** One per message that was not a well-formed packet (or the datagram's broken framing). */
  readonly errors: NetlinkError[];
}

/**
 * Parses a datagram: its NFLOG packet messages, in order. Other messages (ACKs, the
 * NLMSG_DONE that ends a batch) are skipped; malformed ones are returned as errors. Never
 * throws on any input.
 */
export function parseNflogDatagram(buf: Buffer): NflogDatagram {
  const packets: NflogPacket[] = [];
  const errors: NetlinkError[] = [];
  let messages: NetlinkMessage[];
  try {
    messages = parseMessages(buf);
  } catch (err) {
    if (!(err instanceof NetlinkError)) throw err;
    return { packets, errors: [err] };
  }
  for (const msg of messages) {
    if (msg.type !== NFLOG_PACKET_TYPE) continue;
    try {
      packets.push(parseNflogPacket(msg));
    } catch (err) {
      if (!(err instanceof NetlinkError)) throw err;
      errors.push(err);
    }
  }
  return { packets, errors };
}
