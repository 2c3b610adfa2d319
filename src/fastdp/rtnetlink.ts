/**
 * rtnetlink (NETLINK_ROUTE) message builders and parsers for the fast datapath: VXLAN and
 * bridge links, link attribute changes, bridge-port flags, link dumps and bridge FDB entries
 * (add, delete, dump). Pure codecs over
 * ./netlink.ts; host-order fields are little-endian (see netlink.ts).
 *
 * Also what attaching an endpoint needs: veth pairs, moving a link to another network
 * namespace, renaming it, setting its MAC, IPv4 addresses, routes and namespace ids.
 *
 * Layouts (linux/rtnetlink.h, linux/neighbour.h, linux/if_addr.h):
 *   struct ifinfomsg { u8 family; u8 pad; u16 type; s32 index; u32 flags; u32 change; } 16 B
 *   struct ndmsg { u8 family; u8 pad1; u16 pad2; s32 ifindex; u16 state; u8 flags; u8 type; } 12 B
 *   struct ifaddrmsg { u8 family; u8 prefixlen; u8 flags; u8 scope; u32 index; } 8 B
 *   struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; } 12 B
 *   struct rtgenmsg { u8 family; } 1 B, padded to 4
 */

import { macBytes } from "../wire/ethernet.js";
import { parseIpv4 } from "../wire/ipv4.js";
import {
  AttributeList,
  MessageBuilder,
  NetlinkError,
  type NetlinkMessage,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_HDRLEN,
  parseAttributes,
} from "./netlink.js";

// Message types (linux/rtnetlink.h)
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

// Address families (bits/socket.h)
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;

// Interface flags (linux/if.h)
export const IFF_UP = 0x1;

// IFLA_* (linux/if_link.h)
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_PROTINFO = 12;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_GROUP = 2;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_TTL = 5;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_UDP_CSUM = 18;
export const IFLA_VXLAN_COLLECT_METADATA = 25;
export const IFLA_VXLAN_DF = 29;

// enum ifla_vxlan_df (linux/if_link.h): the outer header's DF bit.
export const VXLAN_DF_UNSET = 0;
export const VXLAN_DF_SET = 1;
export const VXLAN_DF_INHERIT = 2;

// IFLA_BRPORT_* (linux/if_link.h): bridge-port attributes nested in IFLA_PROTINFO.
export const IFLA_BRPORT_LEARNING = 8;
export const IFLA_BRPORT_UNICAST_FLOOD = 9;
export const IFLA_BRPORT_FLUSH = 24;
export const IFLA_BRPORT_ISOLATED = 33;

// NDA_* (linux/neighbour.h)
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NDA_VLAN = 5;
export const NDA_PORT = 6;
export const NDA_VNI = 7;
export const NDA_IFINDEX = 8;
export const NDA_MASTER = 9;

export const NTF_USE = 1 << 0;
export const NTF_SELF = 1 << 1;
export const NTF_MASTER = 1 << 2;

export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;

export const IFINFOMSG_SIZE = 16;
export const NDMSG_SIZE = 12;

/** Max interface name length without the NUL (IFNAMSIZ - 1). */
export const IFNAMSIZ = 16;

const REQ_ACK = NLM_F_REQUEST | NLM_F_ACK;
const REQ_CREATE = REQ_ACK | NLM_F_CREATE | NLM_F_EXCL;

// ---------------------------------------------------------------------------------------------
// Fixed headers

export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}

export function encodeIfinfomsg(h: Partial<IfInfoMsg> = {}): Buffer {
  const b = Buffer.alloc(IFINFOMSG_SIZE);
  b.writeUInt8(h.family ?? AF_UNSPEC, 0);
  b.writeUInt16LE(h.type ?? 0, 2);
  b.writeInt32LE(h.index ?? 0, 4);
  b.writeUInt32LE(h.flags ?? 0, 8);
  b.writeUInt32LE(h.change ?? 0, 12);
  return b;
}

export function parseIfinfomsg(payload: Buffer): IfInfoMsg {
  if (payload.length < IFINFOMSG_SIZE) {
    throw new NetlinkError("truncated", `ifinfomsg needs ${IFINFOMSG_SIZE} bytes`);
  }
  return {
    family: payload.readUInt8(0),
    type: payload.readUInt16LE(2),
    index: payload.readInt32LE(4),
    flags: payload.readUInt32LE(8),
    change: payload.readUInt32LE(12),
  };
}

export interface NdMsg {
  family: number;
  ifindex: number;
  state: number;
  flags: number;
  type: number;
}

export function encodeNdmsg(h: Partial<NdMsg> = {}): Buffer {
  const b = Buffer.alloc(NDMSG_SIZE);
  b.writeUInt8(h.family ?? AF_UNSPEC, 0);
  b.writeInt32LE(h.ifindex ?? 0, 4);
  b.writeUInt16LE(h.state ?? 0, 8);
  b.writeUInt8(h.flags ?? 0, 10);
  b.writeUInt8(h.type ?? 0, 11);
  return b;
}

export function parseNdmsg(payload: Buffer): NdMsg {
  if (payload.length < NDMSG_SIZE) {
    throw new NetlinkError("truncated", `ndmsg needs ${NDMSG_SIZE} bytes`);
  }
  return {
    family: payload.readUInt8(0),
    ifindex: payload.readInt32LE(4),
    state: payload.readUInt16LE(8),
    flags: payload.readUInt8(10),
    type: payload.readUInt8(11),
  };
}

// ---------------------------------------------------------------------------------------------
// Address helpers

/** Dotted-quad IPv4 → 4 bytes in network order (struct in_addr). */
export function ipv4Bytes(addr: string): Buffer {
  const value = parseIpv4(addr);
  if (value === undefined) throw new RangeError(`bad IPv4 address: ${addr}`);
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

export function formatMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

export function formatIpv4(b: Buffer): string {
  return [...b].join(".");
}

function checkIfname(name: string): void {
  const n = Buffer.byteLength(name, "utf8");
  if (n === 0 || n >= IFNAMSIZ || /[\0/\s:]/.test(name)) {
    throw new RangeError(`bad interface name: ${JSON.stringify(name)}`);
  }
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index <= 0 || index > 0x7fffffff) {
    throw new RangeError(`bad ifindex: ${index}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Link builders

export interface VxlanOptions {
  name: string;
  /** VNI, 24 bits. */
  vni: number;
  /** UDP destination port (encoded in network order); kernel default 8472 if omitted. */
  port?: number;
  /** Local IPv4 source address (dotted quad). */
  local?: string;
  /** Underlay device ifindex. */
  link?: number;
  /** Learn remote MACs from received frames (IFLA_VXLAN_LEARNING); kernel default on. */
  learning?: boolean;
  collectMetadata?: boolean;
  /** Outer IPv4 TTL, 1..255 (IFLA_VXLAN_TTL); kernel default 0 = the route's hop limit. */
  ttl?: number;
  /** Outer DF bit: true = always set, false = never, "inherit" = from the inner IPv4 header. */
  df?: boolean | "inherit";
  /** Outer UDP checksum over IPv4 (IFLA_VXLAN_UDP_CSUM); false sends a zero checksum. */
  udpCsum?: boolean;
  mtu?: number;
}

/** RTM_NEWLINK (REQUEST|ACK|CREATE|EXCL) creating a VXLAN device. */
export function buildNewVxlan(opts: VxlanOptions, seq = 0): Buffer {
  checkIfname(opts.name);
  if (!Number.isInteger(opts.vni) || opts.vni < 0 || opts.vni > 0xffffff) {
    throw new RangeError(`bad VNI: ${opts.vni}`);
  }
  const m = new MessageBuilder(RTM_NEWLINK, REQ_CREATE, seq);
  m.struct(encodeIfinfomsg());
  m.string(IFLA_IFNAME, opts.name);
  if (opts.mtu !== undefined) m.u32(IFLA_MTU, opts.mtu);
  m.nested(IFLA_LINKINFO, (li) => {
    li.string(IFLA_INFO_KIND, "vxlan");
    li.nested(IFLA_INFO_DATA, (d) => {
      d.u32(IFLA_VXLAN_ID, opts.vni);
      if (opts.port !== undefined) d.u16be(IFLA_VXLAN_PORT, opts.port);
      if (opts.local !== undefined) d.bytes(IFLA_VXLAN_LOCAL, ipv4Bytes(opts.local));
      if (opts.link !== undefined) {
        checkIndex(opts.link);
        d.u32(IFLA_VXLAN_LINK, opts.link);
      }
      if (opts.learning !== undefined) d.u8(IFLA_VXLAN_LEARNING, opts.learning ? 1 : 0);
      if (opts.collectMetadata !== undefined) {
        d.u8(IFLA_VXLAN_COLLECT_METADATA, opts.collectMetadata ? 1 : 0);
      }
      if (opts.ttl !== undefined) {
        if (!Number.isInteger(opts.ttl) || opts.ttl < 1 || opts.ttl > 255) {
          throw new RangeError(`bad VXLAN TTL: ${opts.ttl}`);
        }
        d.u8(IFLA_VXLAN_TTL, opts.ttl);
      }
      if (opts.df !== undefined) {
        const df =
          opts.df === "inherit" ? VXLAN_DF_INHERIT : opts.df ? VXLAN_DF_SET : VXLAN_DF_UNSET;
        d.u8(IFLA_VXLAN_DF, df);
      }
      if (opts.udpCsum !== undefined) d.u8(IFLA_VXLAN_UDP_CSUM, opts.udpCsum ? 1 : 0);
    });
  });
  return m.build();
}

export interface BridgeOptions {
  name: string;
  mtu?: number;
}

/** RTM_NEWLINK (REQUEST|ACK|CREATE|EXCL) creating a bridge device. */
export function buildNewBridge(opts: BridgeOptions, seq = 0): Buffer {
  checkIfname(opts.name);
  const m = new MessageBuilder(RTM_NEWLINK, REQ_CREATE, seq);
  m.struct(encodeIfinfomsg());
  m.string(IFLA_IFNAME, opts.name);
  if (opts.mtu !== undefined) m.u32(IFLA_MTU, opts.mtu);
  m.nested(IFLA_LINKINFO, (li) => li.string(IFLA_INFO_KIND, "bridge"));
  return m.build();
}

export interface SetLinkOptions {
  index: number;
  /** Enslave to this ifindex; 0 releases from the current master. */
  master?: number;
  /** Set (true) or clear (false) IFF_UP; untouched if omitted (ifi_change mask). */
  up?: boolean;
  mtu?: number;
  /** RTM_NEWLINK (default, like iproute2) or RTM_SETLINK. */
  msgType?: typeof RTM_NEWLINK | typeof RTM_SETLINK;
}

/** Changes master / admin state / MTU of an existing link (REQUEST|ACK). */
export function buildSetLink(opts: SetLinkOptions, seq = 0): Buffer {
  checkIndex(opts.index);
  const m = new MessageBuilder(opts.msgType ?? RTM_NEWLINK, REQ_ACK, seq);
  m.struct(
    encodeIfinfomsg({
      index: opts.index,
      flags: opts.up === true ? IFF_UP : 0,
      change: opts.up === undefined ? 0 : IFF_UP,
    }),
  );
  if (opts.mtu !== undefined) m.u32(IFLA_MTU, opts.mtu);
  if (opts.master !== undefined) {
    if (opts.master !== 0) checkIndex(opts.master);
    m.u32(IFLA_MASTER, opts.master);
  }
  return m.build();
}

export interface BridgePortOptions {
  /** The port's ifindex (a device enslaved to a bridge). */
  index: number;
  /** Isolated ports never exchange frames with each other through the bridge. */
  isolated?: boolean;
  /** The bridge learns source MACs seen on this port. */
  learning?: boolean;
  /** Unknown-unicast frames are flooded to this port. */
  unicastFlood?: boolean;
  /** Forget every MAC the bridge learned on this port (IFLA_BRPORT_FLUSH; static ones stay). */
  flush?: boolean;
}

/**
 * Bridge-port flags: RTM_SETLINK (REQUEST|ACK), family AF_BRIDGE, IFLA_PROTINFO (nested) with
 * IFLA_BRPORT_* u8 attributes; flags left undefined are untouched. The kernel answers
 * EOPNOTSUPP when the device is not enslaved to a bridge.
 */
export function buildSetBridgePort(opts: BridgePortOptions, seq = 0): Buffer {
  checkIndex(opts.index);
  const flags: [number, boolean | undefined][] = [
    [IFLA_BRPORT_LEARNING, opts.learning],
    [IFLA_BRPORT_UNICAST_FLOOD, opts.unicastFlood],
    [IFLA_BRPORT_ISOLATED, opts.isolated],
  ];
  if (flags.every(([, v]) => v === undefined) && opts.flush !== true) {
    throw new RangeError("buildSetBridgePort: no bridge-port flag to set");
  }
  const m = new MessageBuilder(RTM_SETLINK, REQ_ACK, seq);
  m.struct(encodeIfinfomsg({ family: AF_BRIDGE, index: opts.index }));
  m.nested(IFLA_PROTINFO, (p) => {
    for (const [type, value] of flags) if (value !== undefined) p.u8(type, value ? 1 : 0);
    if (opts.flush === true) p.flag(IFLA_BRPORT_FLUSH);
  });
  return m.build();
}

/** RTM_DELLINK by ifindex or by name (REQUEST|ACK). */
export function buildDelLink(target: { index: number } | { name: string }, seq = 0): Buffer {
  const m = new MessageBuilder(RTM_DELLINK, REQ_ACK, seq);
  if ("index" in target) {
    checkIndex(target.index);
    m.struct(encodeIfinfomsg({ index: target.index }));
  } else {
    checkIfname(target.name);
    m.struct(encodeIfinfomsg());
    m.string(IFLA_IFNAME, target.name);
  }
  return m.build();
}

/**
 * RTM_GETLINK for one link by ifindex or name (REQUEST|ACK, not a dump): the kernel answers
 * with one RTM_NEWLINK, then the ACK; ENODEV if there is no such link.
 */
export function buildGetLink(target: { index: number } | { name: string }, seq = 0): Buffer {
  const m = new MessageBuilder(RTM_GETLINK, REQ_ACK, seq);
  if ("index" in target) {
    checkIndex(target.index);
    m.struct(encodeIfinfomsg({ index: target.index }));
  } else {
    checkIfname(target.name);
    m.struct(encodeIfinfomsg());
    m.string(IFLA_IFNAME, target.name);
  }
  return m.build();
}

/** RTM_GETLINK dump request (REQUEST|DUMP), all families. */
export function buildGetLinkDump(seq = 0): Buffer {
  return new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq)
    .struct(encodeIfinfomsg())
    .build();
}

// ---------------------------------------------------------------------------------------------
// Link parsing

export interface LinkInfo {
  index: number;
  name: string;
  flags: number;
  mtu: number;
  /** IFLA_INFO_KIND: "bridge", "vxlan", "veth", ...; absent for plain devices (lo, eth0). */
  kind?: string;
  /** IFLA_MASTER: ifindex of the bridge (or bond, VRF) the link is enslaved to. */
  master?: number;
  /** For kind "vxlan", from IFLA_INFO_DATA. */
  vxlan?: VxlanInfo;
}

export interface VxlanInfo {
  /** IFLA_VXLAN_ID: the VNI the device receives (and sends when an FDB remote names none). */
  vni: number;
  /** IFLA_VXLAN_PORT: UDP destination port (and the port it listens on). */
  port?: number;
  /** IFLA_VXLAN_LOCAL, when IPv4. */
  local?: string;
}

/** Decodes one RTM_NEWLINK message (dump reply or notification). */
export function parseLinkMessage(msg: NetlinkMessage): LinkInfo {
  if (msg.type !== RTM_NEWLINK) {
    throw new NetlinkError("bad-value", `expected RTM_NEWLINK, got type ${msg.type}`);
  }
  const hdr = parseIfinfomsg(msg.payload);
  const attrs = parseAttributes(msg.payload, IFINFOMSG_SIZE, msg.payload.length);
  const link: LinkInfo = {
    index: hdr.index,
    name: attrs.requireString(IFLA_IFNAME),
    flags: hdr.flags,
    mtu: attrs.requireU32(IFLA_MTU),
  };
  const linkinfo = attrs.nested(IFLA_LINKINFO);
  const kind = linkinfo?.string(IFLA_INFO_KIND);
  if (kind !== undefined) link.kind = kind;
  if (kind === "vxlan") {
    const data = linkinfo?.nested(IFLA_INFO_DATA);
    const vni = data?.u32(IFLA_VXLAN_ID);
    if (data !== undefined && vni !== undefined) {
      const vxlan: VxlanInfo = { vni };
      const port = data.u16be(IFLA_VXLAN_PORT);
      if (port !== undefined) vxlan.port = port;
      const local = data.get(IFLA_VXLAN_LOCAL);
      if (local !== undefined && local.length === 4) vxlan.local = formatIpv4(local);
      link.vxlan = vxlan;
    }
  }
  const master = attrs.u32(IFLA_MASTER);
  if (master !== undefined) link.master = master;
  return link;
}

export interface LinkDumpResult {
  links: LinkInfo[];
  /** True once NLMSG_DONE has been seen (the dump is complete). */
  done: boolean;
}

/**
 * Collects the messages of type `type` from one received batch of a dump, decoded by `parse`;
 * stops at NLMSG_DONE. NLMSG_ERROR with a non-zero errno or an NLMSG_DONE with a negative status
 * throws NetlinkError; other message types are skipped.
 */
function collectDump<T>(
  msgs: readonly NetlinkMessage[],
  what: string,
  type: number,
  parse: (msg: NetlinkMessage) => T,
): { items: T[]; done: boolean } {
  const items: T[] = [];
  for (const msg of msgs) {
    if (msg.ack !== undefined) {
      if (msg.ack.errno !== 0) {
        throw new NetlinkError("bad-value", `${what} failed: errno ${msg.ack.errno}`);
      }
      continue;
    }
    if (msg.type === NLMSG_DONE) {
      if (msg.doneStatus !== undefined && msg.doneStatus < 0) {
        throw new NetlinkError("bad-value", `${what} failed: errno ${-msg.doneStatus}`);
      }
      return { items, done: true };
    }
    if (msg.type === type) items.push(parse(msg));
  }
  return { items, done: false };
}

/**
 * Collects links from one received batch of a dump. NLMSG_ERROR with a non-zero errno or an
 * NLMSG_DONE with a negative status throws NetlinkError; other message types are skipped.
 */
export function parseLinkDump(msgs: readonly NetlinkMessage[]): LinkDumpResult {
  const { items, done } = collectDump(msgs, "link dump", RTM_NEWLINK, parseLinkMessage);
  return { links: items, done };
}

// ---------------------------------------------------------------------------------------------
// Bridge FDB (neighbour) entries

export interface FdbEntry {
  /** Device the entry lives on (e.g. the vxlan device). */
  ifindex: number;
  /** Destination MAC, "aa:bb:cc:dd:ee:ff". */
  lladdr: string;
  /** Remote VTEP IPv4 (NDA_DST). */
  dst?: string;
  /** Remote VNI (NDA_VNI): what a vxlan device puts in frames sent to `dst`. */
  vni?: number;
  /** Remote UDP port (NDA_PORT), when not the device's own destination port. */
  port?: number;
}

/** How RTM_NEWNEIGH treats an existing entry: EXCL, APPEND (vxlan multi-dst) or REPLACE. */
export type FdbAddMode = "add" | "append" | "replace";

function fdbBuilder(type: number, flags: number, e: FdbEntry, seq: number): MessageBuilder {
  checkIndex(e.ifindex);
  const m = new MessageBuilder(type, flags, seq);
  m.struct(
    encodeNdmsg({
      family: AF_BRIDGE,
      ifindex: e.ifindex,
      state: NUD_PERMANENT,
      flags: NTF_SELF,
    }),
  );
  m.bytes(NDA_LLADDR, macBytes(e.lladdr));
  if (e.dst !== undefined) m.bytes(NDA_DST, ipv4Bytes(e.dst));
  if (e.vni !== undefined) {
    if (!Number.isInteger(e.vni) || e.vni < 0 || e.vni > 0xffffff) {
      throw new RangeError(`bad VNI: ${e.vni}`);
    }
    m.u32(NDA_VNI, e.vni);
  }
  if (e.port !== undefined) {
    if (!Number.isInteger(e.port) || e.port < 1 || e.port > 0xffff) {
      throw new RangeError(`bad FDB port: ${e.port}`);
    }
    m.u16be(NDA_PORT, e.port);
  }
  return m;
}

/**
 * RTM_NEWNEIGH, family AF_BRIDGE, NTF_SELF, NUD_PERMANENT. A vxlan device refuses "replace" for
 * the all-zero and multicast MACs (EOPNOTSUPP, "Cannot replace non-unicast fdb entries"): those
 * entries hold a list of remotes, grown with "append" and shrunk with buildFdbDel.
 */
export function buildFdbAdd(e: FdbEntry, mode: FdbAddMode = "replace", seq = 0): Buffer {
  const modeFlag = mode === "add" ? NLM_F_EXCL : mode === "append" ? NLM_F_APPEND : NLM_F_REPLACE;
  return fdbBuilder(RTM_NEWNEIGH, REQ_ACK | NLM_F_CREATE | modeFlag, e, seq).build();
}

/**
 * RTM_DELNEIGH for the same key. On a vxlan device, with `dst` only the matching remote
 * (dst, vni, port; absent ones mean the device's own) goes; without it, the whole entry.
 */
export function buildFdbDel(e: FdbEntry, seq = 0): Buffer {
  return fdbBuilder(RTM_DELNEIGH, REQ_ACK, e, seq).build();
}

export interface NeighbourInfo extends NdMsg {
  lladdr?: string;
  /** NDA_DST when it is an IPv4 address (IPv6 destinations are left out). */
  dst?: string;
  /** NDA_VNI. A vxlan device reports it only when it differs from the device's own VNI. */
  vni?: number;
  /** NDA_PORT (UDP, host order). A vxlan device reports it only when it differs from its own. */
  port?: number;
  /** NDA_VLAN. */
  vlan?: number;
  /** NDA_MASTER: the bridge, for entries of the bridge's own table. */
  master?: number;
}

/** Decodes an RTM_NEWNEIGH / RTM_DELNEIGH message. */
export function parseNeighbourMessage(msg: NetlinkMessage): NeighbourInfo {
  if (msg.type !== RTM_NEWNEIGH && msg.type !== RTM_DELNEIGH) {
    throw new NetlinkError("bad-value", `expected RTM_NEWNEIGH/DELNEIGH, got ${msg.type}`);
  }
  const info: NeighbourInfo = parseNdmsg(msg.payload);
  const attrs: AttributeList = parseAttributes(msg.payload, NDMSG_SIZE, msg.payload.length);
  const ll = attrs.get(NDA_LLADDR);
  if (ll !== undefined) {
    if (ll.length !== 6) throw new NetlinkError("bad-value", `NDA_LLADDR of ${ll.length} bytes`);
    info.lladdr = formatMac(ll);
  }
  const dst = attrs.get(NDA_DST);
  if (dst !== undefined && dst.length === 4) info.dst = formatIpv4(dst);
  const vni = attrs.u32(NDA_VNI);
  if (vni !== undefined) info.vni = vni;
  const port = attrs.u16be(NDA_PORT);
  if (port !== undefined) info.port = port;
  const vlan = attrs.u16(NDA_VLAN);
  if (vlan !== undefined) info.vlan = vlan;
  const master = attrs.u32(NDA_MASTER);
  if (master !== undefined) info.master = master;
  return info;
}

/**
 * RTM_GETNEIGH dump of bridge FDB entries (REQUEST|DUMP, family AF_BRIDGE), of one device when
 * `ifindex` is given. The header is an ifinfomsg (like iproute2's `bridge fdb show dev X`): on a
 * socket without NETLINK_GET_STRICT_CHK the kernel filters on its ifi_index only then (an ndmsg
 * header would dump every device). For a bridge port the reply holds both the bridge's entries
 * for the port (with NDA_MASTER; kernel 6.18 leaves ndm_flags 0 on them) and the device's own
 * (NTF_SELF, e.g. vxlan remotes). Dumped by the bridge's own index, only the bridge's entries come.
 */
export function buildGetFdbDump(ifindex?: number, seq = 0): Buffer {
  if (ifindex !== undefined) checkIndex(ifindex);
  return new MessageBuilder(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq)
    .struct(encodeIfinfomsg({ family: AF_BRIDGE, index: ifindex ?? 0 }))
    .build();
}

export interface FdbDumpResult {
  entries: NeighbourInfo[];
  /** True once NLMSG_DONE has been seen (the dump is complete). */
  done: boolean;
}

/**
 * Collects FDB entries (RTM_NEWNEIGH of family AF_BRIDGE) from one received batch of a dump;
 * errors as in parseLinkDump. Entries of other families are skipped.
 */
export function parseFdbDump(msgs: readonly NetlinkMessage[]): FdbDumpResult {
  const { items, done } = collectDump(msgs, "fdb dump", RTM_NEWNEIGH, parseNeighbourMessage);
  return { entries: items.filter((e) => e.family === AF_BRIDGE), done };
}

// ---------------------------------------------------------------------------------------------
// Endpoints: veth pairs, namespaces, names, MACs, IPv4 addresses and routes
//
// The builders below send what iproute2 6.1 sends for the equivalent `ip` command (tests compare
// them with its bytes), with two deliberate differences: nested attributes carry NLA_F_NESTED
// (iproute2 leaves it off; the kernel accepts both), and look-ups ask for an ACK so that
// NetlinkSocket knows where the reply ends.

export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_NEWNSID = 88;
export const RTM_GETNSID = 90;

export const IFLA_NET_NS_PID = 19;
export const IFLA_NET_NS_FD = 28;
export const IFLA_LINK_NETNSID = 37;

/** linux/veth.h: in IFLA_INFO_DATA, a struct ifinfomsg and the peer's IFLA_* attributes. */
export const VETH_INFO_PEER = 1;

// IFA_* (linux/if_addr.h)
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_BROADCAST = 4;
export const IFA_FLAGS = 8;

// RTA_* (linux/rtnetlink.h)
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_TABLE = 15;

export const RT_TABLE_MAIN = 254;
/** Routes added by an administrator (what `ip route add` uses). */
export const RTPROT_BOOT = 3;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
/** In a delete request: any scope. */
export const RT_SCOPE_NOWHERE = 255;
export const RTN_UNICAST = 1;

// NETNSA_* (linux/net_namespace.h)
export const NETNSA_NSID = 1;
export const NETNSA_PID = 2;
export const NETNSA_FD = 3;
/** NETNSA_NSID when the namespace has no id in the asking one. */
export const NETNSA_NSID_NOT_ASSIGNED = -1;

export const IFADDRMSG_SIZE = 8;
export const RTMSG_SIZE = 12;
export const RTGENMSG_SIZE = 1;

/** A network namespace named by an open file descriptor of it, or by a process in it. */
export type NetnsRef = { fd: number } | { pid: number };

function netnsAttr(m: MessageBuilder, ns: NetnsRef): void {
  if ("fd" in ns) {
    if (!Number.isInteger(ns.fd) || ns.fd < 0 || ns.fd > 0x7fffffff) {
      throw new RangeError(`bad namespace fd: ${ns.fd}`);
    }
    m.u32(IFLA_NET_NS_FD, ns.fd);
  } else {
    if (!Number.isInteger(ns.pid) || ns.pid <= 0 || ns.pid > 0x7fffffff) {
      throw new RangeError(`bad namespace pid: ${ns.pid}`);
    }
    m.u32(IFLA_NET_NS_PID, ns.pid);
  }
}

function checkMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < 68 || mtu > 0xffff) throw new RangeError(`bad MTU: ${mtu}`);
}

function checkPrefix(len: number): void {
  if (!Number.isInteger(len) || len < 0 || len > 32) {
    throw new RangeError(`bad IPv4 prefix length: ${len}`);
  }
}

export interface VethPeerOptions {
  /** The peer's name; the kernel picks "vethN" if omitted. */
  name?: string;
  mtu?: number;
  /** The peer's MAC, "aa:bb:cc:dd:ee:ff"; random if omitted. */
  address?: string;
  /** Create the peer directly in this namespace. */
  netns?: NetnsRef;
}

export interface VethOptions {
  name: string;
  mtu?: number;
  address?: string;
  peer?: VethPeerOptions;
}

/**
 * RTM_NEWLINK (REQUEST|ACK|CREATE|EXCL) creating a veth pair, as
 * `ip link add NAME mtu M address A type veth peer name P mtu M address A netns N` does:
 * IFLA_INFO_KIND "veth" (no NUL, like iproute2), and in IFLA_INFO_DATA a VETH_INFO_PEER holding
 * a zero ifinfomsg and the peer's attributes. VETH_INFO_PEER is not a plain attribute stream
 * (a struct comes first), so it goes without NLA_F_NESTED, as iproute2 and the kernel's own
 * policy (a minimum length, not a nest) have it.
 */
export function buildNewVeth(opts: VethOptions, seq = 0): Buffer {
  checkIfname(opts.name);
  const peer = opts.peer ?? {};
  if (peer.name !== undefined) checkIfname(peer.name);
  if (opts.mtu !== undefined) checkMtu(opts.mtu);
  if (peer.mtu !== undefined) checkMtu(peer.mtu);
  const p = new MessageBuilder(0, 0).struct(encodeIfinfomsg());
  if (peer.mtu !== undefined) p.u32(IFLA_MTU, peer.mtu);
  if (peer.address !== undefined) p.bytes(IFLA_ADDRESS, macBytes(peer.address));
  if (peer.netns !== undefined) netnsAttr(p, peer.netns);
  if (peer.name !== undefined) p.string(IFLA_IFNAME, peer.name);
  const peerPayload = p.build().subarray(NLMSG_HDRLEN);

  const m = new MessageBuilder(RTM_NEWLINK, REQ_CREATE, seq);
  m.struct(encodeIfinfomsg());
  if (opts.mtu !== undefined) m.u32(IFLA_MTU, opts.mtu);
  if (opts.address !== undefined) m.bytes(IFLA_ADDRESS, macBytes(opts.address));
  m.string(IFLA_IFNAME, opts.name);
  m.nested(IFLA_LINKINFO, (li) => {
    li.bytes(IFLA_INFO_KIND, Buffer.from("veth"));
    li.nested(IFLA_INFO_DATA, (d) => d.bytes(VETH_INFO_PEER, peerPayload));
  });
  return m.build();
}

/**
 * Moves a link to another network namespace (REQUEST|ACK), as `ip link set dev X netns N
 * [name NEW]`: IFLA_NET_NS_FD or IFLA_NET_NS_PID, then IFLA_IFNAME when renaming. The kernel
 * renames after the move, so `name` is checked against the target namespace; the ifindex may
 * change there (when taken).
 */
export function buildMoveLink(
  opts: { index: number; netns: NetnsRef; name?: string },
  seq = 0,
): Buffer {
  checkIndex(opts.index);
  if (opts.name !== undefined) checkIfname(opts.name);
  const m = new MessageBuilder(RTM_NEWLINK, REQ_ACK, seq);
  m.struct(encodeIfinfomsg({ index: opts.index }));
  netnsAttr(m, opts.netns);
  if (opts.name !== undefined) m.string(IFLA_IFNAME, opts.name);
  return m.build();
}

/** Renames a link (REQUEST|ACK), as `ip link set dev X name NEW`; the link must be down. */
export function buildRenameLink(opts: { index: number; name: string }, seq = 0): Buffer {
  checkIndex(opts.index);
  checkIfname(opts.name);
  return new MessageBuilder(RTM_NEWLINK, REQ_ACK, seq)
    .struct(encodeIfinfomsg({ index: opts.index }))
    .string(IFLA_IFNAME, opts.name)
    .build();
}

/** Sets a link's MAC (REQUEST|ACK), as `ip link set dev X address A`. */
export function buildSetLinkAddress(opts: { index: number; address: string }, seq = 0): Buffer {
  checkIndex(opts.index);
  return new MessageBuilder(RTM_NEWLINK, REQ_ACK, seq)
    .struct(encodeIfinfomsg({ index: opts.index }))
    .bytes(IFLA_ADDRESS, macBytes(opts.address))
    .build();
}

/**
 * RTM_GETNSID (REQUEST|ACK) for the namespace open as `fd`: the kernel answers RTM_NEWNSID with
 * NETNSA_NSID, the id that namespace has in the asking socket's one (-1 if it has none; the
 * kernel gives one when it first reports a link whose other end is there). iproute2 sends the
 * same without NLM_F_ACK.
 */
export function buildGetNsid(fd: number, seq = 0): Buffer {
  if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new RangeError(`bad namespace fd: ${fd}`);
  }
  return new MessageBuilder(RTM_GETNSID, REQ_ACK, seq)
    .struct(Buffer.of(AF_UNSPEC))
    .u32(NETNSA_FD, fd)
    .build();
}

/** The NETNSA_NSID of an RTM_NEWNSID reply (-1: not assigned). */
export function parseNsidMessage(msg: NetlinkMessage): number {
  if (msg.type !== RTM_NEWNSID) {
    throw new NetlinkError("bad-value", `expected RTM_NEWNSID, got type ${msg.type}`);
  }
  if (msg.payload.length < RTGENMSG_SIZE) {
    throw new NetlinkError("truncated", "rtgenmsg needs 1 byte");
  }
  const start = Math.min(msg.payload.length, 4);
  const attrs = parseAttributes(msg.payload, start, msg.payload.length);
  return attrs.requireU32(NETNSA_NSID) | 0;
}

// --- links, with what endpoint attachment needs to know of them

export interface LinkDetails extends LinkInfo {
  /** IFLA_ADDRESS, when it is a 6-byte (Ethernet) address. */
  address?: string;
  /** IFLA_LINK: for a veth, the peer's ifindex, in the namespace `linkNetnsid` names if set. */
  link?: number;
  /** IFLA_LINK_NETNSID: where the other end is, as an id in this namespace (absent: here). */
  linkNetnsid?: number;
}

/** parseLinkMessage plus the MAC and, for a veth, where its peer is. */
export function parseLinkDetails(msg: NetlinkMessage): LinkDetails {
  const link: LinkDetails = parseLinkMessage(msg);
  const attrs = parseAttributes(msg.payload, IFINFOMSG_SIZE, msg.payload.length);
  const address = attrs.get(IFLA_ADDRESS);
  if (address !== undefined && address.length === 6) link.address = formatMac(address);
  const peer = attrs.u32(IFLA_LINK);
  if (peer !== undefined) link.link = peer | 0;
  const nsid = attrs.u32(IFLA_LINK_NETNSID);
  if (nsid !== undefined) link.linkNetnsid = nsid | 0;
  return link;
}

// --- IPv4 addresses

export interface IfAddrMsg {
  family: number;
  prefixLength: number;
  flags: number;
  scope: number;
  index: number;
}

export function encodeIfaddrmsg(h: Partial<IfAddrMsg> = {}): Buffer {
  const b = Buffer.alloc(IFADDRMSG_SIZE);
  b.writeUInt8(h.family ?? AF_UNSPEC, 0);
  b.writeUInt8(h.prefixLength ?? 0, 1);
  b.writeUInt8(h.flags ?? 0, 2);
  b.writeUInt8(h.scope ?? 0, 3);
  b.writeUInt32LE(h.index ?? 0, 4);
  return b;
}

export function parseIfaddrmsg(payload: Buffer): IfAddrMsg {
  if (payload.length < IFADDRMSG_SIZE) {
    throw new NetlinkError("truncated", `ifaddrmsg needs ${IFADDRMSG_SIZE} bytes`);
  }
  return {
    family: payload.readUInt8(0),
    prefixLength: payload.readUInt8(1),
    flags: payload.readUInt8(2),
    scope: payload.readUInt8(3),
    index: payload.readUInt32LE(4),
  };
}

export interface AddressOptions {
  /** The interface. */
  index: number;
  /** IPv4, dotted quad. */
  address: string;
  prefixLength: number;
  /** IFA_BROADCAST (`brd`); none if omitted, as with a plain `ip addr add`. */
  broadcast?: string;
}

function addressBuilder(type: number, flags: number, a: AddressOptions, seq: number) {
  checkIndex(a.index);
  checkPrefix(a.prefixLength);
  const local = ipv4Bytes(a.address);
  const m = new MessageBuilder(type, flags, seq);
  m.struct(encodeIfaddrmsg({ family: AF_INET, prefixLength: a.prefixLength, index: a.index }));
  m.bytes(IFA_LOCAL, local);
  m.bytes(IFA_ADDRESS, local);
  return m;
}

/**
 * RTM_NEWADDR (REQUEST|ACK|CREATE|EXCL), as `ip addr add A/LEN [brd B] dev X`: family AF_INET,
 * scope global, IFA_LOCAL and IFA_ADDRESS both the address, then IFA_BROADCAST if given. The
 * kernel answers EEXIST when the interface already has this address with this prefix length.
 */
export function buildNewAddress(a: AddressOptions, seq = 0): Buffer {
  const m = addressBuilder(RTM_NEWADDR, REQ_CREATE, a, seq);
  if (a.broadcast !== undefined) m.bytes(IFA_BROADCAST, ipv4Bytes(a.broadcast));
  return m.build();
}

/**
 * RTM_DELADDR (REQUEST|ACK), as `ip addr del A/LEN dev X`; EADDRNOTAVAIL when there is no such
 * address. Deleting a primary address also deletes the secondaries of its subnet.
 */
export function buildDelAddress(a: Omit<AddressOptions, "broadcast">, seq = 0): Buffer {
  return addressBuilder(RTM_DELADDR, REQ_ACK, a, seq).build();
}

/**
 * RTM_GETADDR dump (REQUEST|DUMP) of one family (default AF_INET), as `ip -4 addr show`. Without
 * NETLINK_GET_STRICT_CHK the kernel ignores an index in the header, so this dumps every
 * interface: filter the replies.
 */
export function buildGetAddressDump(family = AF_INET, seq = 0): Buffer {
  return new MessageBuilder(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq)
    .struct(encodeIfaddrmsg({ family }))
    .build();
}

export interface AddressInfo extends IfAddrMsg {
  /** IFA_LOCAL for AF_INET: the interface's own address. */
  local?: string;
  /** IFA_ADDRESS for AF_INET: the same, or the peer's on a point-to-point link. */
  address?: string;
  broadcast?: string;
  label?: string;
}

/**
 * Decodes an RTM_NEWADDR / RTM_DELADDR message. IFA_FLAGS (32 bits), when present, replaces
 * the 8-bit ifa_flags. Addresses are decoded for AF_INET only (and must then be 4 bytes).
 */
export function parseAddressMessage(msg: NetlinkMessage): AddressInfo {
  if (msg.type !== RTM_NEWADDR && msg.type !== RTM_DELADDR) {
    throw new NetlinkError("bad-value", `expected RTM_NEWADDR/DELADDR, got type ${msg.type}`);
  }
  const info: AddressInfo = parseIfaddrmsg(msg.payload);
  const attrs = parseAttributes(msg.payload, IFADDRMSG_SIZE, msg.payload.length);
  const flags = attrs.u32(IFA_FLAGS);
  if (flags !== undefined) info.flags = flags;
  if (info.family === AF_INET) {
    for (const [type, key] of [
      [IFA_LOCAL, "local"],
      [IFA_ADDRESS, "address"],
      [IFA_BROADCAST, "broadcast"],
    ] as const) {
      const v = attrs.get(type);
      if (v === undefined) continue;
      if (v.length !== 4) throw new NetlinkError("bad-value", `IPv4 ${key} of ${v.length} bytes`);
      info[key] = formatIpv4(v);
    }
    if (info.prefixLength > 32) {
      throw new NetlinkError("bad-value", `IPv4 prefix length ${info.prefixLength}`);
    }
  }
  const label = attrs.string(IFA_LABEL);
  if (label !== undefined) info.label = label;
  return info;
}

export interface AddressDumpResult {
  addresses: AddressInfo[];
  /** True once NLMSG_DONE has been seen (the dump is complete). */
  done: boolean;
}

/** Collects the addresses of one received batch of an address dump; errors as parseLinkDump. */
export function parseAddressDump(msgs: readonly NetlinkMessage[]): AddressDumpResult {
  const { items, done } = collectDump(msgs, "address dump", RTM_NEWADDR, parseAddressMessage);
  return { addresses: items, done };
}

// --- IPv4 routes

export interface RtMsg {
  family: number;
  dstLength: number;
  srcLength: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

export function encodeRtmsg(h: Partial<RtMsg> = {}): Buffer {
  const b = Buffer.alloc(RTMSG_SIZE);
  b.writeUInt8(h.family ?? AF_UNSPEC, 0);
  b.writeUInt8(h.dstLength ?? 0, 1);
  b.writeUInt8(h.srcLength ?? 0, 2);
  b.writeUInt8(h.tos ?? 0, 3);
  b.writeUInt8(h.table ?? 0, 4);
  b.writeUInt8(h.protocol ?? 0, 5);
  b.writeUInt8(h.scope ?? 0, 6);
  b.writeUInt8(h.type ?? 0, 7);
  b.writeUInt32LE(h.flags ?? 0, 8);
  return b;
}

export function parseRtmsg(payload: Buffer): RtMsg {
  if (payload.length < RTMSG_SIZE) {
    throw new NetlinkError("truncated", `rtmsg needs ${RTMSG_SIZE} bytes`);
  }
  return {
    family: payload.readUInt8(0),
    dstLength: payload.readUInt8(1),
    srcLength: payload.readUInt8(2),
    tos: payload.readUInt8(3),
    table: payload.readUInt8(4),
    protocol: payload.readUInt8(5),
    scope: payload.readUInt8(6),
    type: payload.readUInt8(7),
    flags: payload.readUInt32LE(8),
  };
}

export interface RouteOptions {
  /** Destination network, dotted quad (host bits must be zero). */
  dst: string;
  prefixLength: number;
  /** Output interface (RTA_OIF). */
  oif: number;
}

function routeBuilder(
  type: number,
  flags: number,
  r: RouteOptions,
  hdr: Partial<RtMsg>,
  seq: number,
) {
  checkPrefix(r.prefixLength);
  checkIndex(r.oif);
  const dst = ipv4Bytes(r.dst);
  const host = r.prefixLength === 32 ? 0 : 0xffffffff >>> r.prefixLength;
  if ((dst.readUInt32BE(0) & host) !== 0) {
    throw new RangeError(`route ${r.dst}/${r.prefixLength} has host bits set`);
  }
  const m = new MessageBuilder(type, flags, seq);
  m.struct(
    encodeRtmsg({ family: AF_INET, dstLength: r.prefixLength, table: RT_TABLE_MAIN, ...hdr }),
  );
  m.bytes(RTA_DST, dst);
  m.u32(RTA_OIF, r.oif);
  return m;
}

/**
 * RTM_NEWROUTE (REQUEST|ACK|CREATE|EXCL) for a directly connected route, as
 * `ip route add DST/LEN dev X`: main table, protocol boot, scope link, unicast. EEXIST when the
 * main table already has a route to DST/LEN (through any device).
 */
export function buildNewRoute(r: RouteOptions, seq = 0): Buffer {
  const hdr = { protocol: RTPROT_BOOT, scope: RT_SCOPE_LINK, type: RTN_UNICAST };
  return routeBuilder(RTM_NEWROUTE, REQ_CREATE, r, hdr, seq).build();
}

/**
 * RTM_DELROUTE (REQUEST|ACK), as `ip route del DST/LEN dev X`: main table, any protocol, scope
 * and type. ESRCH when there is no such route.
 */
export function buildDelRoute(r: RouteOptions, seq = 0): Buffer {
  return routeBuilder(RTM_DELROUTE, REQ_ACK, r, { scope: RT_SCOPE_NOWHERE }, seq).build();
}
