// The rtnetlink codec against real bytes: replies that a 6.18 kernel sent to weft's own builders
// in a network namespace (see rtnetlink-fixtures.ts for how and what) are decoded with weft's
// parsers and checked against the setup. Then every parser is fuzzed starting from those bytes
// (truncations, byte mutations, corrupted nlmsg_len / nla_len / echoed lengths): only
// NetlinkError may escape, and every input is parsed within a time budget.
import { constants } from "node:os";
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  type AttributeList,
  NetlinkError,
  NLA_F_NESTED,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  parseAttributes,
  parseMessages,
  type NetlinkMessage,
} from "../../../src/fastdp/netlink.js";
import {
  AF_BRIDGE,
  buildFdbAdd,
  buildGetLink,
  buildNewBridge,
  buildNewVxlan,
  buildSetBridgePort,
  buildSetLink,
  formatMac,
  IFF_UP,
  IFINFOMSG_SIZE,
  IFLA_ADDRESS,
  IFLA_BRPORT_ISOLATED,
  IFLA_BRPORT_LEARNING,
  IFLA_BRPORT_UNICAST_FLOOD,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_VXLAN_DF,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_TTL,
  IFLA_VXLAN_UDP_CSUM,
  NDMSG_SIZE,
  NTF_MASTER,
  NTF_SELF,
  NUD_PERMANENT,
  parseFdbDump,
  parseIfinfomsg,
  parseLinkDump,
  parseLinkMessage,
  parseNdmsg,
  parseNeighbourMessage,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_SETLINK,
  VXLAN_DF_SET,
  type LinkInfo,
} from "../../../src/fastdp/rtnetlink.js";
import * as fx from "./rtnetlink-fixtures.js";

// linux/if_link.h: the bridge-port attributes of an enslaved device come back in IFLA_LINKINFO
// as IFLA_INFO_SLAVE_KIND "bridge" + IFLA_INFO_SLAVE_DATA (weft's parser does not surface them).
const IFLA_INFO_SLAVE_KIND = 4;
const IFLA_INFO_SLAVE_DATA = 5;

const { EEXIST, EINVAL, ENODEV, EOPNOTSUPP } = constants.errno;
const ZERO_MAC = "00:00:00:00:00:00";

function one(buf: Buffer): NetlinkMessage {
  const msgs = parseMessages(buf);
  expect(msgs).toHaveLength(1);
  return msgs[0]!;
}

/** The attributes after the ifinfomsg of a captured RTM_NEWLINK. */
function linkAttrs(m: NetlinkMessage): AttributeList {
  return parseAttributes(m.payload, IFINFOMSG_SIZE);
}

describe(`link replies (kernel ${fx.KERNEL})`, () => {
  const dump = parseMessages(fx.KERNEL_LINK_DUMP);
  const byName = new Map(parseLinkDump(dump).links.map((l) => [l.name, l]));

  it("RTM_GETLINK dump: the seven links of the namespace, NLMSG_DONE in its own datagram", () => {
    expect(dump).toHaveLength(7);
    for (const m of dump) {
      expect([m.type, m.flags, m.seq, m.pid]).toEqual([RTM_NEWLINK, NLM_F_MULTI, 202, fx.PORT_ID]);
    }
    const first = parseLinkDump(dump);
    expect(first.done).toBe(false); // the kernel sent NLMSG_DONE separately
    expect(first.links.map((l) => [l.index, l.name, l.kind, l.mtu, l.master])).toEqual([
      [fx.IFINDEX.lo, "lo", undefined, 65536, undefined],
      [fx.IFINDEX.br0, "br0", "bridge", fx.MTU, undefined],
      [fx.IFINDEX.vp1, "vp1", "veth", 1500, undefined],
      [fx.IFINDEX.vp0, "vp0", "veth", fx.MTU, fx.IFINDEX.br0],
      [fx.IFINDEX.ul1, "ul1", "veth", 1500, undefined],
      [fx.IFINDEX.ul0, "ul0", "veth", 1500, undefined],
      [fx.IFINDEX.vx0, "vx0", "vxlan", fx.MTU, fx.IFINDEX.br0],
    ]);
    for (const l of first.links) expect(l.flags & IFF_UP).toBe(IFF_UP);
    expect(first.links.filter((l) => l.vxlan !== undefined).map((l) => l.name)).toEqual(["vx0"]);

    const done = one(fx.KERNEL_LINK_DUMP_DONE);
    expect([done.type, done.flags, done.seq, done.doneStatus]).toEqual([
      NLMSG_DONE,
      NLM_F_MULTI,
      202,
      0,
    ]);
    expect(parseLinkDump([done])).toEqual({ links: [], done: true });
    const all = parseLinkDump([...dump, done]);
    expect(all.done).toBe(true);
    expect(all.links).toEqual(first.links);
  });

  it("RTM_GETLINK of vx0 by name: VNI, port and local as `ip link add ... vxlan` set them", () => {
    const m = one(fx.KERNEL_GETLINK_VX0);
    expect([m.type, m.flags, m.seq, m.pid]).toEqual([RTM_NEWLINK, 0, 203, fx.PORT_ID]);
    const vx0 = parseLinkMessage(m);
    expect(vx0).toEqual<LinkInfo>({
      index: fx.IFINDEX.vx0,
      name: "vx0",
      flags: vx0.flags,
      mtu: fx.MTU,
      kind: "vxlan",
      master: fx.IFINDEX.br0,
      vxlan: { vni: fx.VNI, port: fx.VXLAN_PORT, local: fx.LOCAL },
    });
    expect(vx0.flags & IFF_UP).toBe(IFF_UP);
    // The same link as in the dump (the flags word may differ between the two snapshots).
    expect({ ...vx0, flags: 0 }).toEqual({ ...byName.get("vx0"), flags: 0 });
    expect(parseLinkDump([m])).toEqual({ links: [vx0], done: false });

    const ack = one(fx.KERNEL_GETLINK_VX0_ACK);
    expect([ack.type, ack.seq, ack.pid]).toEqual([NLMSG_ERROR, 203, fx.PORT_ID]);
    expect(ack.ack).toEqual({
      error: 0,
      errno: 0,
      originalType: RTM_GETLINK,
      originalSeq: 203,
      originalPid: 0,
    });
  });

  it("vx0's attributes the parser leaves out: the rest of the setup, raw", () => {
    const attrs = linkAttrs(one(fx.KERNEL_GETLINK_VX0));
    expect(formatMac(attrs.get(IFLA_ADDRESS)!)).toBe(fx.VX0_MAC);
    const linkinfo = attrs.nested(IFLA_LINKINFO)!;
    expect(linkinfo.string(IFLA_INFO_KIND)).toBe("vxlan");
    const data = linkinfo.nested(IFLA_INFO_DATA)!;
    expect(data.u32(IFLA_VXLAN_ID)).toBe(0x002001);
    expect(data.u16be(IFLA_VXLAN_PORT)).toBe(6784);
    expect(data.get(IFLA_VXLAN_LOCAL)).toEqual(Buffer.of(198, 18, 0, 1));
    expect(data.u32(IFLA_VXLAN_LINK)).toBe(fx.IFINDEX.ul0); // dev ul0
    expect(data.u8(IFLA_VXLAN_TTL)).toBe(64);
    expect(data.u8(IFLA_VXLAN_DF)).toBe(VXLAN_DF_SET);
    expect(data.u8(IFLA_VXLAN_LEARNING)).toBe(0); // nolearning
    expect(data.u8(IFLA_VXLAN_UDP_CSUM)).toBe(1); // the kernel's default for IPv4
    // `bridge link set dev vx0 isolated on`: LinkInfo has no bridge-port flags, so read them here.
    expect(linkinfo.string(IFLA_INFO_SLAVE_KIND)).toBe("bridge");
    const port = linkinfo.nested(IFLA_INFO_SLAVE_DATA)!;
    expect(port.u8(IFLA_BRPORT_ISOLATED)).toBe(1);
    expect(port.u8(IFLA_BRPORT_LEARNING)).toBe(1);
    expect(port.u8(IFLA_BRPORT_UNICAST_FLOOD)).toBe(1);
    // The other port, vp0, is not isolated.
    const vp0 = dump.find((m) => parseIfinfomsg(m.payload).index === fx.IFINDEX.vp0)!;
    const vp0info = linkAttrs(vp0).nested(IFLA_LINKINFO)!;
    expect(vp0info.string(IFLA_INFO_SLAVE_KIND)).toBe("bridge");
    expect(vp0info.nested(IFLA_INFO_SLAVE_DATA)!.u8(IFLA_BRPORT_ISOLATED)).toBe(0);
    // Kernels do not flag every nest with NLA_F_NESTED: IFLA_LINKINFO comes without it.
    const raw = attrs.list.find((a) => a.type === IFLA_LINKINFO);
    expect(raw?.nested).toBe(false);
  });

  it("RTM_GETLINK of br0 by index: a bridge of MTU 1376 with vp0's MAC, enslaved to nothing", () => {
    const m = one(fx.KERNEL_GETLINK_BR0);
    expect([m.type, m.flags, m.seq, m.pid]).toEqual([RTM_NEWLINK, 0, 204, fx.PORT_ID]);
    const br0 = parseLinkMessage(m);
    expect(br0).toEqual<LinkInfo>({
      index: fx.IFINDEX.br0,
      name: "br0",
      flags: br0.flags,
      mtu: fx.MTU,
      kind: "bridge",
    });
    expect({ ...br0, flags: 0 }).toEqual({ ...byName.get("br0"), flags: 0 });
    expect(formatMac(linkAttrs(m).get(IFLA_ADDRESS)!)).toBe(fx.BR0_MAC);
    expect(one(fx.KERNEL_GETLINK_BR0_ACK).ack).toMatchObject({
      errno: 0,
      originalType: RTM_GETLINK,
      originalSeq: 204,
    });
  });
});

describe(`FDB replies (kernel ${fx.KERNEL})`, () => {
  it("dump of vx0: the bridge's entry for its MAC, then both default remotes", () => {
    const msgs = [
      ...parseMessages(fx.KERNEL_FDB_DUMP_VX0),
      ...parseMessages(fx.KERNEL_FDB_DUMP_VX0_DONE),
    ];
    expect(msgs.map((m) => [m.type, m.flags, m.seq])).toEqual([
      [RTM_NEWNEIGH, NLM_F_MULTI, 205],
      [RTM_NEWNEIGH, NLM_F_MULTI, 205],
      [RTM_NEWNEIGH, NLM_F_MULTI, 205],
      [NLMSG_DONE, NLM_F_MULTI, 205],
    ]);
    const { entries, done } = parseFdbDump(msgs);
    expect(done).toBe(true);
    const common = { family: AF_BRIDGE, ifindex: fx.IFINDEX.vx0, state: NUD_PERMANENT };
    expect(entries).toEqual([
      // The bridge's own entry for its port: NDA_MASTER names the bridge, and ndm_flags is 0
      // (not NTF_MASTER, which only requests carry).
      { ...common, flags: 0, type: 0, lladdr: fx.VX0_MAC, master: fx.IFINDEX.br0 },
      // `bridge fdb append ... port 6784`: the device's own port, so no NDA_PORT. vxlan's
      // entries have ndm_type 1 (RTN_UNICAST), the bridge's 0.
      { ...common, flags: NTF_SELF, type: 1, lladdr: ZERO_MAC, dst: "198.18.0.2", vni: 0x001002 },
      // weft's buildFdbAdd(..., "append") with port 6785.
      { ...common, flags: NTF_SELF, type: 1, lladdr: ZERO_MAC, dst: "198.18.0.3", vni: 0x001003, port: 6785 }, // prettier-ignore
    ]);
    expect(entries.every((e) => (e.flags & NTF_MASTER) === 0)).toBe(true);
    // What link-ops keeps as the device's default remotes.
    const remotes = entries.filter((e) => e.lladdr === ZERO_MAC && (e.flags & NTF_SELF) !== 0);
    expect(remotes.map((e) => [e.dst, e.vni, e.port ?? fx.VXLAN_PORT])).toEqual([
      ["198.18.0.2", 0x001002, 6784],
      ["198.18.0.3", 0x001003, 6785],
    ]);
    // parseNeighbourMessage on each message gives the same entries.
    expect(msgs.slice(0, 3).map(parseNeighbourMessage)).toEqual(entries);
  });

  it("dump of br0: only the bridge device's own multicast addresses", () => {
    const msgs = parseMessages(fx.KERNEL_FDB_DUMP_BR0);
    const done = one(fx.KERNEL_FDB_DUMP_BR0_DONE);
    expect(msgs.every((m) => m.type === RTM_NEWNEIGH && m.seq === 206)).toBe(true);
    const { entries } = parseFdbDump([...msgs, done]);
    expect(entries.map((e) => e.lladdr)).toEqual([
      "33:33:00:00:00:01",
      "01:00:5e:00:00:6a",
      "33:33:00:00:00:6a",
      "01:00:5e:00:00:01",
      "33:33:ff:" + fx.BR0_MAC.slice(9), // the solicited-node group of br0's link-local address
    ]);
    for (const e of entries) {
      expect(e).toMatchObject({
        family: AF_BRIDGE,
        ifindex: fx.IFINDEX.br0,
        state: NUD_PERMANENT,
        flags: NTF_SELF,
      });
      expect(e.master).toBeUndefined();
      expect(e.dst).toBeUndefined();
    }
    expect(parseFdbDump([done])).toEqual({ entries: [], done: true });
  });
});

describe(`ACKs and errors (kernel ${fx.KERNEL})`, () => {
  // Each captured NLMSG_ERROR with the request weft's builder made for it (same arguments and
  // sequence number as in the capture). The socket had NETLINK_CAP_ACK: the kernel echoes the
  // request's 16-byte header only.
  const cases: {
    what: string;
    reply: Buffer;
    request: Buffer;
    errno: number;
    text?: string;
  }[] = [
    {
      what: "FDB append: success ACK",
      reply: fx.KERNEL_FDB_APPEND_ACK,
      request: buildFdbAdd(
        { ifindex: 7, lladdr: ZERO_MAC, dst: "198.18.0.3", vni: 0x001003, port: 6785 },
        "append",
        201,
      ),
      errno: 0,
    },
    {
      what: "RTM_GETLINK of vx0: success ACK",
      reply: fx.KERNEL_GETLINK_VX0_ACK,
      request: buildGetLink({ name: "vx0" }, 203),
      errno: 0,
    },
    {
      what: "RTM_GETLINK of br0: success ACK",
      reply: fx.KERNEL_GETLINK_BR0_ACK,
      request: buildGetLink({ index: fx.IFINDEX.br0 }, 204),
      errno: 0,
    },
    {
      what: "a bridge named br0 again: EEXIST",
      reply: fx.KERNEL_NEWBRIDGE_EXISTS_ERROR,
      request: buildNewBridge({ name: "br0", mtu: fx.MTU }, 207),
      errno: EEXIST,
    },
    {
      what: "bridge-port flags on a non-port: EOPNOTSUPP",
      reply: fx.KERNEL_BRPORT_NOT_A_PORT_ERROR,
      request: buildSetBridgePort({ index: fx.IFINDEX.ul0, isolated: true }, 208),
      errno: EOPNOTSUPP,
    },
    {
      what: "a second VXLAN device with vx0's VNI: EEXIST and text",
      reply: fx.KERNEL_VXLAN_VNI_EXISTS_ERROR,
      request: buildNewVxlan(
        { name: "vx1", vni: fx.VNI, port: fx.VXLAN_PORT, local: fx.LOCAL },
        209,
      ),
      errno: EEXIST,
      text: "A VXLAN device with the specified VNI already exists",
    },
    {
      what: "RTM_GETLINK of a missing name: ENODEV",
      reply: fx.KERNEL_GETLINK_NODEV_ERROR,
      request: buildGetLink({ name: "nosuchdev" }, 210),
      errno: ENODEV,
    },
    {
      what: "a VXLAN device on a missing underlay: ENODEV and text",
      reply: fx.KERNEL_VXLAN_NO_LOWER_ERROR,
      request: buildNewVxlan(
        { name: "vx2", vni: 0x002002, port: fx.VXLAN_PORT, local: fx.LOCAL, link: 999 },
        211,
      ),
      errno: ENODEV,
      text: "Invalid local interface, device not found",
    },
    {
      what: "MTU 9000 on vx0: EINVAL",
      reply: fx.KERNEL_SETLINK_MTU_ERROR,
      request: buildSetLink({ index: fx.IFINDEX.vx0, mtu: 9000 }, 212),
      errno: EINVAL,
    },
  ];

  it.each(cases)("$what; the echoed header is the builder's", (c) => {
    const m = one(c.reply);
    const seq = c.request.readUInt32LE(8);
    expect([m.type, m.seq, m.pid]).toEqual([NLMSG_ERROR, seq, fx.PORT_ID]);
    expect(m.flags & NLM_F_CAPPED).toBe(NLM_F_CAPPED);
    expect(m.flags & NLM_F_ACK_TLVS).toBe(c.text === undefined ? 0 : NLM_F_ACK_TLVS);
    expect(m.ack).toEqual({
      error: c.errno === 0 ? 0 : -c.errno,
      errno: c.errno,
      originalType: c.request.readUInt16LE(4),
      originalSeq: seq,
      originalPid: 0,
      ...(c.text === undefined ? {} : { extAckMessage: c.text }),
    });
    // The request header as weft built and sent it, byte for byte (nlmsg_len included).
    expect(m.payload.subarray(4, 4 + NLMSG_HDRLEN).equals(c.request.subarray(0, NLMSG_HDRLEN))).toBe(true); // prettier-ignore
  });

  it("extended ACK layout: one NUL-terminated NLMSGERR_ATTR_MSG after the capped header", () => {
    for (const reply of [fx.KERNEL_VXLAN_VNI_EXISTS_ERROR, fx.KERNEL_VXLAN_NO_LOWER_ERROR]) {
      const m = one(reply);
      const tlvs = parseAttributes(m.payload, 4 + NLMSG_HDRLEN);
      expect(tlvs.list.map((a) => a.type)).toEqual([NLMSGERR_ATTR_MSG]);
      const raw = tlvs.get(NLMSGERR_ATTR_MSG)!;
      expect(raw[raw.length - 1]).toBe(0);
      expect(tlvs.string(NLMSGERR_ATTR_MSG)).toBe(m.ack!.extAckMessage);
    }
  });

  it("derived, not captured: the same error from a socket without NETLINK_CAP_ACK", () => {
    // Without CAP_ACK the kernel echoes the whole request, and the TLVs follow it: splice the
    // builder's request into the captured reply in place of its header and clear NLM_F_CAPPED.
    const c = one(fx.KERNEL_VXLAN_VNI_EXISTS_ERROR);
    const request = buildNewVxlan(
      { name: "vx1", vni: fx.VNI, port: fx.VXLAN_PORT, local: fx.LOCAL },
      209,
    );
    const tlvs = c.payload.subarray(4 + NLMSG_HDRLEN);
    const hdr = Buffer.from(fx.KERNEL_VXLAN_VNI_EXISTS_ERROR.subarray(0, NLMSG_HDRLEN));
    const body = Buffer.concat([c.payload.subarray(0, 4), request, tlvs]);
    hdr.writeUInt32LE(NLMSG_HDRLEN + body.length, 0);
    hdr.writeUInt16LE(NLM_F_ACK_TLVS, 6);
    expect(one(Buffer.concat([hdr, body])).ack).toEqual(c.ack);
  });

  it("a captured error inside a dump batch is a NetlinkError naming the errno", () => {
    const err = one(fx.KERNEL_VXLAN_VNI_EXISTS_ERROR);
    expect(() => parseLinkDump([...parseMessages(fx.KERNEL_LINK_DUMP), err])).toThrow(
      /link dump failed: errno 17/,
    );
    expect(() => parseFdbDump([err])).toThrow(NetlinkError);
    // A success ACK in a batch is skipped.
    expect(parseFdbDump([one(fx.KERNEL_FDB_APPEND_ACK)])).toEqual({ entries: [], done: false });
    const done = Buffer.from(fx.KERNEL_FDB_DUMP_VX0_DONE);
    done.writeInt32LE(-EINVAL, NLMSG_HDRLEN);
    expect(() => parseFdbDump(parseMessages(done))).toThrow(/fdb dump failed: errno 22/);
  });

  it("messages of the other kind are refused, not misread", () => {
    const link = one(fx.KERNEL_GETLINK_BR0);
    const neigh = parseMessages(fx.KERNEL_FDB_DUMP_BR0)[0]!;
    expect(() => parseLinkMessage(neigh)).toThrow(NetlinkError);
    expect(() => parseNeighbourMessage(link)).toThrow(NetlinkError);
    expect(() => parseLinkMessage({ ...link, type: RTM_SETLINK })).toThrow(NetlinkError);
    expect(parseLinkDump([neigh]).links).toEqual([]);
    expect(parseFdbDump([link]).entries).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzzing

/** Every captured datagram. */
const CAPTURED: readonly Buffer[] = [
  fx.KERNEL_FDB_APPEND_ACK,
  fx.KERNEL_LINK_DUMP,
  fx.KERNEL_LINK_DUMP_DONE,
  fx.KERNEL_GETLINK_VX0,
  fx.KERNEL_GETLINK_VX0_ACK,
  fx.KERNEL_GETLINK_BR0,
  fx.KERNEL_GETLINK_BR0_ACK,
  fx.KERNEL_FDB_DUMP_VX0,
  fx.KERNEL_FDB_DUMP_VX0_DONE,
  fx.KERNEL_FDB_DUMP_BR0,
  fx.KERNEL_FDB_DUMP_BR0_DONE,
  fx.KERNEL_NEWBRIDGE_EXISTS_ERROR,
  fx.KERNEL_BRPORT_NOT_A_PORT_ERROR,
  fx.KERNEL_VXLAN_VNI_EXISTS_ERROR,
  fx.KERNEL_GETLINK_NODEV_ERROR,
  fx.KERNEL_VXLAN_NO_LOWER_ERROR,
  fx.KERNEL_SETLINK_MTU_ERROR,
];

/** Every captured message as a datagram of its own. */
const MESSAGES: readonly Buffer[] = CAPTURED.flatMap((d) => {
  const out: Buffer[] = [];
  for (let off = 0; off < d.length; off += (d.readUInt32LE(off) + 3) & ~3) {
    out.push(d.subarray(off, off + d.readUInt32LE(off)));
  }
  return out;
});

/**
 * Generous per-input budget. The parsers are synchronous, so a true infinite loop cannot be
 * interrupted: it would stop this file from ever finishing, which is a failure too. The budget
 * catches the step before that, a parse that has gone super-linear.
 */
const BUDGET_MS = 1000;

/** Runs fn; anything thrown must be a NetlinkError, else fail with the input and the stack. */
function onlyNetlinkError(input: Buffer, what: string, fn: () => unknown): void {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    if (!(e instanceof NetlinkError)) {
      const stack = e instanceof Error ? e.stack : String(e);
      throw new Error(`${what} threw a non-NetlinkError on ${input.toString("hex")}\n${stack}`);
    }
  }
  const ms = performance.now() - t0;
  if (ms > BUDGET_MS) throw new Error(`${what} took ${ms} ms on ${input.toString("hex")}`);
}

/** Runs get; a NetlinkError (a size mismatch, a missing attribute) is fine, anything else not. */
function tolerate(get: () => unknown): void {
  try {
    get();
  } catch (e) {
    if (!(e instanceof NetlinkError)) throw e;
  }
}

/**
 * The typed getters over an attribute stream, descending into anything that parses as a nest
 * (kernels leave NLA_F_NESTED off many nests). Each attribute gets the getter of its size and
 * the string getter; the first one also gets every other getter (the size-mismatch paths).
 */
function walkAttributes(payload: Buffer, start: number, depth = 0): void {
  const attrs = parseAttributes(payload, start, payload.length);
  attrs.list.forEach((a, i) => {
    const n = a.value.length;
    if (i === 0 || n === 1) tolerate(() => attrs.u8(a.type));
    if (i === 0 || n === 2) tolerate(() => attrs.u16(a.type) ?? attrs.u16be(a.type));
    if (i === 0 || n === 4) tolerate(() => attrs.u32be(a.type) ?? attrs.requireU32(a.type));
    tolerate(() => attrs.requireString(a.type));
    if (depth < 4 && (a.nested || n >= 4)) {
      tolerate(() => walkAttributes(a.value, 0, depth + 1));
      if (a.nested) tolerate(() => attrs.nested(a.type));
    }
  });
}

/** parseMessages, then every rtnetlink parser on every message and on the batch. */
function parseEverything(datagram: Buffer): void {
  let msgs: NetlinkMessage[] = [];
  onlyNetlinkError(datagram, "parseMessages", () => {
    msgs = parseMessages(datagram);
  });
  parseBatch(datagram, msgs);
}

function parseBatch(input: Buffer, msgs: NetlinkMessage[]): void {
  onlyNetlinkError(input, "parseLinkDump", () => parseLinkDump(msgs));
  onlyNetlinkError(input, "parseFdbDump", () => parseFdbDump(msgs));
  for (const m of msgs) {
    onlyNetlinkError(input, "parseLinkMessage", () => parseLinkMessage(m));
    onlyNetlinkError(input, "parseNeighbourMessage", () => parseNeighbourMessage(m));
    onlyNetlinkError(input, "parseIfinfomsg", () => parseIfinfomsg(m.payload));
    onlyNetlinkError(input, "parseNdmsg", () => parseNdmsg(m.payload));
    const starts =
      m.type === RTM_NEWLINK
        ? [IFINFOMSG_SIZE]
        : m.type === RTM_NEWNEIGH
          ? [NDMSG_SIZE]
          : m.type === NLMSG_ERROR
            ? [4 + NLMSG_HDRLEN]
            : [IFINFOMSG_SIZE, NDMSG_SIZE, 4 + NLMSG_HDRLEN];
    for (const start of starts) {
      if (start <= m.payload.length) {
        onlyNetlinkError(input, "attributes", () => walkAttributes(m.payload, start));
      }
    }
  }
}

/** Offsets of every length field in a datagram: nlmsg_len, nla_len at any depth, echoed len. */
interface LengthField {
  at: number;
  size: 2 | 4;
}

function lengthFields(datagram: Buffer): LengthField[] {
  const out: LengthField[] = [];
  const attrs = (base: number, payload: Buffer, start: number, depth: number): void => {
    let list;
    try {
      list = parseAttributes(payload, start, payload.length).list;
    } catch {
      return; // not an attribute stream (a string or a struct that happened to be tried)
    }
    let off = start;
    for (const a of list) {
      out.push({ at: base + off, size: 2 });
      if (depth < 4 && a.value.length >= 4) attrs(base + off + 4, a.value, 0, depth + 1);
      off += (a.value.length + 4 + 3) & ~3;
    }
  };
  let off = 0;
  for (const m of parseMessages(datagram)) {
    out.push({ at: off, size: 4 });
    const base = off + NLMSG_HDRLEN;
    if (m.type === NLMSG_ERROR) {
      out.push({ at: base + 4, size: 4 }); // the echoed request's nlmsg_len
      attrs(base, m.payload, 4 + NLMSG_HDRLEN, 0);
    } else if (m.type === RTM_NEWLINK) {
      attrs(base, m.payload, IFINFOMSG_SIZE, 0);
    } else if (m.type === RTM_NEWNEIGH) {
      attrs(base, m.payload, NDMSG_SIZE, 0);
    }
    off += (m.length + 3) & ~3;
  }
  return out;
}

/** Values worth trying in a length field that holds `actual`. */
function suspectLengths(actual: number, size: 2 | 4): number[] {
  const max = size === 2 ? 0xffff : 0xffffffff;
  const values = [0, 1, 3, 4, 5, 15, 16, 17, 20, actual - 4, actual - 1, actual + 1, actual + 4];
  values.push(max, max - 1, max - 3, 0x7fff, 0x8000);
  if (size === 4) values.push(0x7fffffff, 0x80000000, 0xfffffffd);
  return [...new Set(values.filter((v) => v >= 0 && v <= max && v !== actual))];
}

function writeLength(b: Buffer, f: LengthField, value: number): void {
  if (f.size === 2) b.writeUInt16LE(value, f.at);
  else b.writeUInt32LE(value, f.at);
}

function readLength(b: Buffer, f: LengthField): number {
  return f.size === 2 ? b.readUInt16LE(f.at) : b.readUInt32LE(f.at);
}

describe(
  "fuzzing from the captured bytes: only NetlinkError, within budget",
  { timeout: 60_000 },
  () => {
    it("the captured datagrams themselves parse without any error where they should", () => {
      for (const d of CAPTURED) parseEverything(d);
      expect(() => parseLinkDump(parseMessages(fx.KERNEL_LINK_DUMP))).not.toThrow();
      expect(() => parseFdbDump(parseMessages(fx.KERNEL_FDB_DUMP_VX0))).not.toThrow();
    });

    it("length fields are found at every depth (the fuzz below reaches nested attributes)", () => {
      const fields = lengthFields(fx.KERNEL_GETLINK_VX0);
      // nlmsg_len, the top-level attributes, IFLA_LINKINFO's four, IFLA_INFO_DATA's, ...
      expect(fields[0]).toEqual({ at: 0, size: 4 });
      expect(fields.length).toBeGreaterThan(100);
      const err = lengthFields(fx.KERNEL_VXLAN_VNI_EXISTS_ERROR);
      expect(err).toEqual([
        { at: 0, size: 4 },
        { at: 20, size: 4 },
        { at: 36, size: 2 },
      ]);
    });

    it("every truncation of every captured datagram", () => {
      for (const d of CAPTURED) {
        for (let cut = 0; cut < d.length; cut++) parseEverything(d.subarray(0, cut));
      }
    });

    it("every truncation of every captured message's payload (nlmsg_len following it)", () => {
      for (const d of CAPTURED) {
        for (const m of parseMessages(d)) {
          for (let cut = 0; cut < m.payload.length; cut++) {
            const payload = m.payload.subarray(0, cut);
            parseBatch(payload, [{ ...m, payload, length: NLMSG_HDRLEN + cut }]);
          }
        }
      }
    });

    it("every length field of the small captures set to every suspect value", () => {
      for (const d of CAPTURED.filter((c) => c.length < 4096)) {
        for (const f of lengthFields(d)) {
          for (const value of suspectLengths(readLength(d, f), f.size)) {
            const b = Buffer.from(d);
            writeLength(b, f, value);
            parseEverything(b);
          }
        }
      }
    });

    it("random length fields of the link dump set to suspect or random values", () => {
      const fields = lengthFields(fx.KERNEL_LINK_DUMP);
      expect(fields.length).toBeGreaterThan(400);
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 0xffffffff })), {
            minLength: 1,
            maxLength: 3,
          }),
          (edits) => {
            const b = Buffer.from(fx.KERNEL_LINK_DUMP);
            for (const [which, pick, random] of edits) {
              const f = fields[which % fields.length]!;
              const suspects = suspectLengths(readLength(b, f), f.size);
              const randomValue = f.size === 2 ? random & 0xffff : random;
              writeLength(b, f, pick % 4 === 0 ? randomValue : suspects[pick % suspects.length]!);
            }
            parseEverything(b);
          },
        ),
        { numRuns: 1000 },
      );
    });

    it("error ACKs with every CAPPED / ACK_TLVS combination and a corrupted echoed length", () => {
      const errors = CAPTURED.filter((d) => d.readUInt16LE(4) === NLMSG_ERROR);
      fc.assert(
        fc.property(
          fc.constantFrom(...errors),
          fc.constantFrom(0, NLM_F_CAPPED, NLM_F_ACK_TLVS, NLM_F_CAPPED | NLM_F_ACK_TLVS),
          fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 128 })),
          fc.integer({ min: -0x80000000, max: 0x7fffffff }),
          (d, flags, echoed, error) => {
            const b = Buffer.from(d);
            b.writeUInt16LE(flags, 6);
            b.writeUInt32LE(echoed, NLMSG_HDRLEN + 4);
            if (error % 3 === 0) b.writeInt32LE(error, NLMSG_HDRLEN);
            parseEverything(b);
          },
        ),
        { numRuns: 3000 },
      );
    });

    it("random byte mutations of the captured datagrams, optionally cut", () => {
      fc.assert(
        fc.property(
          fc.constantFrom(...CAPTURED),
          fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
            minLength: 1,
            maxLength: 8,
          }),
          fc.nat(),
          (d, edits, cut) => {
            const b = Buffer.from(d);
            for (const e of edits) b[e.at % b.length] = e.value;
            const end = cut % 3 === 0 ? cut % (b.length + 1) : b.length;
            parseEverything(b.subarray(0, end));
          },
        ),
        { numRuns: 4000 },
      );
    });

    it("mutations aimed at the family headers and attribute headers of each message", () => {
      // Byte edits inside a family header (ifinfomsg, ndmsg, nlmsgerr) or the 4 bytes of an
      // attribute header (nla_len, nla_type with its flag bits), where random edits of an 11 KiB
      // dump rarely land. Each message is fuzzed as a datagram of its own, to keep runs cheap.
      const targets = MESSAGES.flatMap((m) => {
        const type = m.readUInt16LE(4);
        const family =
          type === RTM_NEWLINK ? IFINFOMSG_SIZE : type === RTM_NEWNEIGH ? NDMSG_SIZE : 20;
        const headers = lengthFields(m)
          .filter((f) => f.size === 2)
          .map((f) => ({ m, at: f.at, span: 4 }));
        return [
          { m, at: NLMSG_HDRLEN, span: Math.min(family, m.length - NLMSG_HDRLEN) },
          ...headers,
        ];
      });
      fc.assert(
        fc.property(
          fc.constantFrom(...targets),
          fc.nat(),
          fc.integer({ min: 0, max: 255 }),
          fc.boolean(),
          (t, byte, value, nestedBit) => {
            if (t.span === 0) return;
            const b = Buffer.from(t.m);
            b[t.at + (byte % t.span)] = value;
            if (nestedBit && t.span === 4) {
              b.writeUInt16LE(b.readUInt16LE(t.at + 2) ^ NLA_F_NESTED, t.at + 2);
            }
            parseEverything(b);
          },
        ),
        { numRuns: 4000 },
      );
    });

    it("messages recombined across captures (foreign types, reordered, duplicated)", () => {
      const all = CAPTURED.flatMap((d) => parseMessages(d));
      fc.assert(
        fc.property(
          fc.array(fc.nat(), { maxLength: 12 }),
          fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 3 }),
          (picks, types) => {
            const msgs = picks.map((p, i) => {
              const m = all[p % all.length]!;
              const type = types[i];
              return type === undefined ? m : { ...m, type };
            });
            parseBatch(Buffer.alloc(0), msgs);
          },
        ),
        { numRuns: 1500 },
      );
    });
  },
);
