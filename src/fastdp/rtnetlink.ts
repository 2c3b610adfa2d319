/**
 * rtnetlink (NETLINK_ROUTE) message builders and parsers for the fast datapath: VXLAN and
 * bridge links, link attribute changes, bridge-port flags, link dumps and bridge FDB entries
 * (add, delete, dump). Pure codecs over
 * ./netlink.ts; host-order fields are little-endian (see netlink.ts).
 *
 * Layouts (linux/rtnetlink.h, linux/neighbour.h):
 *   struct ifinfomsg { u8 family; u8 pad; u16 type; s32 index; u32 flags; u32 change; } 16 B
 *   struct ndmsg { u8 family; u8 pad1; u16 pad2; s32 ifindex; u16 state; u8 flags; u8 type; } 12 B
 */

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
  const parts = addr.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) < 256)) {
    throw new RangeError(`bad IPv4 address: ${addr}`);
  }
  return Buffer.from(parts.map(Number));
}

/** "aa:bb:cc:dd:ee:ff" → 6 bytes. */
export function macBytes(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) {
    throw new RangeError(`bad MAC address: ${mac}`);
  }
  return Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
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
