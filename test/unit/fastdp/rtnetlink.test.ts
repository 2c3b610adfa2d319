import { describe, expect, it } from "vitest";
import { macBytes } from "../../../src/wire/ethernet.js";
import fc from "fast-check";
import {
  NetlinkError,
  NLA_F_NESTED,
  NLM_F_ACK,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_MULTI,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseAttributes,
  parseMessages,
  type NetlinkMessage,
} from "../../../src/fastdp/netlink.js";
import {
  AF_BRIDGE,
  AF_INET,
  buildDelAddress,
  buildDelRoute,
  buildGetAddressDump,
  buildGetNsid,
  buildMoveLink,
  buildNewAddress,
  buildNewRoute,
  buildNewVeth,
  buildRenameLink,
  buildSetLinkAddress,
  encodeIfaddrmsg,
  encodeRtmsg,
  IFA_ADDRESS,
  IFA_BROADCAST,
  IFA_FLAGS,
  IFA_LABEL,
  IFA_LOCAL,
  IFADDRMSG_SIZE,
  IFLA_ADDRESS,
  IFLA_LINK,
  IFLA_LINK_NETNSID,
  IFLA_NET_NS_FD,
  IFLA_NET_NS_PID,
  NETNSA_FD,
  NETNSA_NSID,
  NETNSA_NSID_NOT_ASSIGNED,
  NETNSA_PID,
  parseAddressDump,
  parseAddressMessage,
  parseIfaddrmsg,
  parseLinkDetails,
  parseNsidMessage,
  parseRtmsg,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_OIF,
  RTA_TABLE,
  RTM_DELADDR,
  RTM_DELROUTE,
  RTM_GETADDR,
  RTM_GETNSID,
  RTM_NEWADDR,
  RTM_NEWNSID,
  RTM_NEWROUTE,
  RTMSG_SIZE,
  RTN_UNICAST,
  RTPROT_BOOT,
  VETH_INFO_PEER,
  buildDelLink,
  buildFdbAdd,
  buildFdbDel,
  buildGetFdbDump,
  buildGetLink,
  buildGetLinkDump,
  buildNewBridge,
  buildNewVxlan,
  buildSetBridgePort,
  buildSetLink,
  encodeIfinfomsg,
  encodeNdmsg,
  IFF_UP,
  IFINFOMSG_SIZE,
  IFLA_BRPORT_FLUSH,
  IFLA_BRPORT_ISOLATED,
  IFLA_BRPORT_LEARNING,
  IFLA_BRPORT_UNICAST_FLOOD,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_PROTINFO,
  IFLA_VXLAN_COLLECT_METADATA,
  IFLA_VXLAN_DF,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_TTL,
  IFLA_VXLAN_UDP_CSUM,
  ipv4Bytes,
  NDA_DST,
  NDA_LLADDR,
  NDA_MASTER,
  NDA_PORT,
  NDA_VLAN,
  NDA_VNI,
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
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_GETLINK,
  RTM_GETNEIGH,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_SETLINK,
  VXLAN_DF_INHERIT,
  VXLAN_DF_SET,
  VXLAN_DF_UNSET,
} from "../../../src/fastdp/rtnetlink.js";

const le16 = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff];
const le32 = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24];
const str = (s: string): number[] => [...Buffer.from(s + "\0")];

function rawAttr(type: number, value: number[]): number[] {
  const out = [...le16(4 + value.length), ...le16(type), ...value];
  while (out.length % 4 !== 0) out.push(0);
  return out;
}

function rawMsg(type: number, flags: number, seq: number, payload: number[]): number[] {
  const out = [...le32(16 + payload.length), ...le16(type), ...le16(flags), ...le32(seq)];
  out.push(...le32(0), ...payload);
  while (out.length % 4 !== 0) out.push(0);
  return out;
}

function rawIfinfo(index: number, flags: number): number[] {
  return [0, 0, ...le16(1), ...le32(index), ...le32(flags), ...le32(0)];
}

function rawNdmsg(family: number, ifindex: number, state: number, flags: number): number[] {
  return [family, 0, 0, 0, ...le32(ifindex), ...le16(state), flags, 0];
}

function one(buf: Buffer): NetlinkMessage {
  const msgs = parseMessages(buf);
  expect(msgs).toHaveLength(1);
  return msgs[0]!;
}

describe("constants and fixed headers", () => {
  it("match linux/rtnetlink.h, if_link.h, neighbour.h", () => {
    expect([RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK]).toEqual([16, 17, 18, 19]);
    expect([RTM_NEWNEIGH, RTM_DELNEIGH]).toEqual([28, 29]);
    expect([IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO]).toEqual([3, 4, 10, 18]);
    expect([IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING]).toEqual([
      1, 3, 4, 7,
    ]);
    expect([IFLA_VXLAN_PORT, IFLA_VXLAN_COLLECT_METADATA]).toEqual([15, 25]);
    expect([IFLA_VXLAN_TTL, IFLA_VXLAN_UDP_CSUM, IFLA_VXLAN_DF]).toEqual([5, 18, 29]);
    expect([VXLAN_DF_UNSET, VXLAN_DF_SET, VXLAN_DF_INHERIT]).toEqual([0, 1, 2]);
    expect([IFLA_PROTINFO, IFLA_BRPORT_LEARNING, IFLA_BRPORT_UNICAST_FLOOD]).toEqual([12, 8, 9]);
    expect([IFLA_BRPORT_FLUSH, IFLA_BRPORT_ISOLATED]).toEqual([24, 33]);
    expect([RTM_GETNEIGH, NDA_VLAN, NDA_PORT, NDA_MASTER, NTF_MASTER]).toEqual([30, 5, 6, 9, 4]);
    expect([NDA_DST, NDA_LLADDR, NDA_VNI, NTF_SELF, NUD_PERMANENT, AF_BRIDGE]).toEqual([
      1, 2, 7, 2, 0x80, 7,
    ]);
  });

  it("ifinfomsg is 16 bytes: family, pad, type u16, index s32, flags u32, change u32", () => {
    const b = encodeIfinfomsg({ family: 7, type: 1, index: 0x01020304, flags: 1, change: 1 });
    expect([...b]).toEqual([7, 0, 1, 0, 4, 3, 2, 1, 1, 0, 0, 0, 1, 0, 0, 0]);
    expect(IFINFOMSG_SIZE).toBe(16);
    expect(parseIfinfomsg(b)).toEqual({
      family: 7,
      type: 1,
      index: 0x01020304,
      flags: 1,
      change: 1,
    });
    expect(() => parseIfinfomsg(b.subarray(0, 15))).toThrow(NetlinkError);
  });

  it("ndmsg is 12 bytes: family, pad1, pad2 u16, ifindex s32, state u16, flags u8, type u8", () => {
    const b = encodeNdmsg({ family: 7, ifindex: 5, state: 0x80, flags: 2, type: 1 });
    expect([...b]).toEqual([7, 0, 0, 0, 5, 0, 0, 0, 0x80, 0, 2, 1]);
    expect(NDMSG_SIZE).toBe(12);
    expect(parseNdmsg(b)).toEqual({ family: 7, ifindex: 5, state: 0x80, flags: 2, type: 1 });
    expect(() => parseNdmsg(b.subarray(0, 11))).toThrow(NetlinkError);
  });
});

describe("link builders", () => {
  it("VXLAN RTM_NEWLINK for vni 42, port 4789, name vx42 is byte-exact", () => {
    const b = buildNewVxlan({ name: "vx42", vni: 42, port: 4789 }, 1);
    const flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    expect(flags).toBe(0x605);
    const expected = [
      ...le32(80), ...le16(16), ...le16(0x605), ...le32(1), ...le32(0),
      ...Array<number>(16).fill(0), // ifinfomsg
      9, 0, 3, 0, 0x76, 0x78, 0x34, 0x32, 0, 0, 0, 0, // IFLA_IFNAME "vx42\0" + 3 pad
      36, 0, 18, 0x80, // IFLA_LINKINFO | NLA_F_NESTED
      10, 0, 1, 0, 0x76, 0x78, 0x6c, 0x61, 0x6e, 0, 0, 0, // IFLA_INFO_KIND "vxlan\0" + 2 pad
      20, 0, 2, 0x80, // IFLA_INFO_DATA | NLA_F_NESTED
      8, 0, 1, 0, 42, 0, 0, 0, // IFLA_VXLAN_ID u32 host order
      6, 0, 15, 0, 0x12, 0xb5, 0, 0, // IFLA_VXLAN_PORT be16 4789 + 2 pad
    ]; // prettier-ignore
    expect([...b]).toEqual(expected);
    expect(b.length % 4).toBe(0);
  });

  it("VXLAN optional attributes parse back", () => {
    const b = buildNewVxlan(
      {
        name: "weft-vx",
        vni: 0xabcdef,
        port: 8472,
        local: "10.0.0.1",
        link: 3,
        learning: false,
        collectMetadata: true,
        mtu: 1450,
      },
      9,
    );
    const m = one(b);
    expect([m.type, m.flags, m.seq]).toEqual([RTM_NEWLINK, 0x605, 9]);
    const a = parseAttributes(m.payload, IFINFOMSG_SIZE);
    expect(a.string(IFLA_IFNAME)).toBe("weft-vx");
    expect(a.u32(IFLA_MTU)).toBe(1450);
    const li = a.nested(IFLA_LINKINFO)!;
    expect(li.string(IFLA_INFO_KIND)).toBe("vxlan");
    const d = li.nested(IFLA_INFO_DATA)!;
    expect(d.u32(IFLA_VXLAN_ID)).toBe(0xabcdef);
    expect(d.u16be(IFLA_VXLAN_PORT)).toBe(8472);
    expect([...d.get(IFLA_VXLAN_LOCAL)!]).toEqual([10, 0, 0, 1]);
    expect(d.u32(IFLA_VXLAN_LINK)).toBe(3);
    expect(d.u8(IFLA_VXLAN_LEARNING)).toBe(0);
    expect(d.u8(IFLA_VXLAN_COLLECT_METADATA)).toBe(1);
  });

  it("rejects bad VXLAN parameters", () => {
    expect(() => buildNewVxlan({ name: "vx", vni: 1 << 24 })).toThrow(RangeError);
    expect(() => buildNewVxlan({ name: "a-very-long-ifname", vni: 1 })).toThrow(RangeError);
    expect(() => buildNewVxlan({ name: "", vni: 1 })).toThrow(RangeError);
    expect(() => buildNewVxlan({ name: "vx", vni: 1, port: 70000 })).toThrow(RangeError);
    expect(() => buildNewVxlan({ name: "vx", vni: 1, local: "10.0.0.256" })).toThrow(RangeError);
    expect(() => buildNewVxlan({ name: "vx", vni: 1, link: 0 })).toThrow(RangeError);
  });

  it("bridge RTM_NEWLINK is byte-exact", () => {
    const b = buildNewBridge({ name: "weft" }, 2);
    expect([...b]).toEqual([
      ...le32(60), ...le16(16), ...le16(0x605), ...le32(2), ...le32(0),
      ...Array<number>(16).fill(0),
      9, 0, 3, 0, 0x77, 0x65, 0x66, 0x74, 0, 0, 0, 0,
      16, 0, 18, 0x80,
      11, 0, 1, 0, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0, 0,
    ]); // prettier-ignore
  });

  it("set link: master, up with change mask, mtu", () => {
    const b = buildSetLink({ index: 5, master: 4, up: true, mtu: 1400 }, 3);
    expect([...b]).toEqual([
      ...le32(48), ...le16(16), ...le16(NLM_F_REQUEST | NLM_F_ACK), ...le32(3), ...le32(0),
      0, 0, 0, 0, ...le32(5), ...le32(IFF_UP), ...le32(IFF_UP),
      8, 0, 4, 0, ...le32(1400),
      8, 0, 10, 0, ...le32(4),
    ]); // prettier-ignore
    const down = parseIfinfomsg(one(buildSetLink({ index: 5, up: false })).payload);
    expect([down.flags, down.change]).toEqual([0, IFF_UP]);
    const untouched = one(buildSetLink({ index: 5, master: 0, msgType: RTM_SETLINK }));
    expect(untouched.type).toBe(RTM_SETLINK);
    expect(parseIfinfomsg(untouched.payload).change).toBe(0);
    expect(parseAttributes(untouched.payload, 16).u32(IFLA_MASTER)).toBe(0);
    expect(() => buildSetLink({ index: -1 })).toThrow(RangeError);
  });

  it("del link by index or name", () => {
    const byIndex = one(buildDelLink({ index: 12 }, 4));
    expect([byIndex.type, byIndex.flags, byIndex.length]).toEqual([RTM_DELLINK, 5, 32]);
    expect(parseIfinfomsg(byIndex.payload).index).toBe(12);
    const byName = one(buildDelLink({ name: "vx42" }));
    expect(parseIfinfomsg(byName.payload).index).toBe(0);
    expect(parseAttributes(byName.payload, 16).string(IFLA_IFNAME)).toBe("vx42");
  });

  it("get link dump request is byte-exact", () => {
    expect([...buildGetLinkDump(6)]).toEqual([
      ...le32(32), ...le16(RTM_GETLINK), ...le16(NLM_F_REQUEST | NLM_F_DUMP), ...le32(6),
      ...le32(0), ...Array<number>(16).fill(0),
    ]); // prettier-ignore
  });
});

describe("link dump parsing", () => {
  const lo = rawMsg(RTM_NEWLINK, NLM_F_MULTI, 6, [
    ...rawIfinfo(1, 0x49),
    ...rawAttr(IFLA_IFNAME, str("lo")),
    ...rawAttr(IFLA_MTU, le32(65536)),
  ]);
  const vx = rawMsg(RTM_NEWLINK, NLM_F_MULTI, 6, [
    ...rawIfinfo(7, 0x1043),
    ...rawAttr(IFLA_IFNAME, str("vx42")),
    ...rawAttr(IFLA_MTU, le32(1450)),
    ...rawAttr(IFLA_MASTER, le32(6)),
    ...rawAttr(IFLA_LINKINFO | NLA_F_NESTED, [
      ...rawAttr(IFLA_INFO_KIND, str("vxlan")),
      ...rawAttr(IFLA_INFO_DATA | NLA_F_NESTED, []),
    ]),
  ]);
  const done = rawMsg(NLMSG_DONE, NLM_F_MULTI, 6, le32(0));

  it("parses a hand-built multi-part dump", () => {
    const msgs = parseMessages(Buffer.from([...lo, ...vx, ...done]));
    expect(parseLinkDump(msgs)).toEqual({
      done: true,
      links: [
        { index: 1, name: "lo", flags: 0x49, mtu: 65536 },
        { index: 7, name: "vx42", flags: 0x1043, mtu: 1450, kind: "vxlan", master: 6 },
      ],
    });
    expect(parseLinkDump(parseMessages(Buffer.from(lo))).done).toBe(false);
  });

  it("surfaces dump errors and malformed links as NetlinkError", () => {
    const err = rawMsg(NLMSG_ERROR, 0, 6, [
      ...le32(-1 >>> 0),
      ...rawMsg(RTM_GETLINK, 0x301, 6, []),
    ]);
    expect(() => parseLinkDump(parseMessages(Buffer.from(err)))).toThrow(/errno 1/);
    const doneErr = rawMsg(NLMSG_DONE, NLM_F_MULTI, 6, le32(-4 >>> 0));
    expect(() => parseLinkDump(parseMessages(Buffer.from(doneErr)))).toThrow(NetlinkError);
    const noName = rawMsg(RTM_NEWLINK, 2, 6, [...rawIfinfo(1, 0), ...rawAttr(IFLA_MTU, le32(1))]);
    expect(() => parseLinkDump(parseMessages(Buffer.from(noName)))).toThrow(NetlinkError);
    const badMtu = rawMsg(RTM_NEWLINK, 2, 6, [
      ...rawIfinfo(1, 0),
      ...rawAttr(IFLA_IFNAME, str("x")),
      ...rawAttr(IFLA_MTU, [1, 2]),
    ]);
    expect(() => parseLinkDump(parseMessages(Buffer.from(badMtu)))).toThrow(NetlinkError);
    expect(() => parseLinkMessage(parseMessages(Buffer.from(done))[0]!)).toThrow(NetlinkError);
  });

  it("arbitrary link payloads only throw NetlinkError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (body) => {
        const msgs = parseMessages(Buffer.from(rawMsg(RTM_NEWLINK, 0, 1, [...body])));
        try {
          parseLinkDump(msgs);
        } catch (e) {
          expect(e).toBeInstanceOf(NetlinkError);
        }
        try {
          parseNeighbourMessage({ ...msgs[0]!, type: RTM_NEWNEIGH });
        } catch (e) {
          expect(e).toBeInstanceOf(NetlinkError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("FDB entries", () => {
  it("add is byte-exact: AF_BRIDGE ndmsg, NTF_SELF, NUD_PERMANENT, lladdr, dst", () => {
    const b = buildFdbAdd(
      { ifindex: 7, lladdr: "00:00:00:00:00:00", dst: "192.168.1.2" },
      "append",
      8,
    );
    const flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
    expect([...b]).toEqual([
      ...le32(48), ...le16(RTM_NEWNEIGH), ...le16(flags), ...le32(8), ...le32(0),
      7, 0, 0, 0, ...le32(7), 0x80, 0, 2, 0, // ndmsg
      10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, // NDA_LLADDR + pad
      8, 0, 1, 0, 192, 168, 1, 2, // NDA_DST
    ]); // prettier-ignore
    expect(one(buildFdbAdd({ ifindex: 7, lladdr: "00:00:00:00:00:01" })).flags).toBe(
      NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
    );
    expect(one(buildFdbAdd({ ifindex: 7, lladdr: "00:00:00:00:00:01" }, "add")).flags).toBe(
      NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    );
  });

  it("del and neighbour parse round trip", () => {
    const entry = { ifindex: 9, lladdr: "aa:bb:cc:0d:0e:0f", dst: "10.1.2.3", vni: 42 };
    const del = one(buildFdbDel(entry, 10));
    expect([del.type, del.flags]).toEqual([RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK]);
    expect(parseNeighbourMessage(del)).toEqual({
      family: AF_BRIDGE,
      state: NUD_PERMANENT,
      flags: NTF_SELF,
      type: 0,
      ...entry,
    });
    expect(() => buildFdbDel({ ...entry, lladdr: "aa:bb:cc" })).toThrow(RangeError);
    expect(() => buildFdbDel({ ...entry, vni: -1 })).toThrow(RangeError);
    expect(() => parseNeighbourMessage({ ...del, type: RTM_NEWLINK })).toThrow(NetlinkError);
  });

  it("address helpers", () => {
    expect([...ipv4Bytes("1.2.3.4")]).toEqual([1, 2, 3, 4]);
    for (const bad of ["1.2.3", "01.2.3.4", "1.2.3.4.5", "a.b.c.d", "256.0.0.0"]) {
      expect(() => ipv4Bytes(bad)).toThrow(RangeError);
    }
    expect([...macBytes("02:FF:00:10:20:30")]).toEqual([2, 255, 0, 16, 32, 48]);
    expect(() => macBytes("02:ff:00:10:20:3")).toThrow(RangeError);
  });
});

describe("fast datapath additions", () => {
  const nested = (type: number, value: number[]): number[] => rawAttr(type | NLA_F_NESTED, value);

  it("VXLAN with ttl, df, learning off and no UDP checksum is byte-exact", () => {
    const b = buildNewVxlan(
      {
        name: "vx1",
        vni: 0x002001,
        port: 6784,
        local: "198.18.0.1",
        ttl: 64,
        df: true,
        learning: false,
        udpCsum: false,
        mtu: 1376,
      },
      5,
    );
    expect([...b]).toEqual([
      ...le32(124), ...le16(RTM_NEWLINK), ...le16(0x605), ...le32(5), ...le32(0),
      ...Array<number>(16).fill(0),
      8, 0, 3, 0, 0x76, 0x78, 0x31, 0, // IFLA_IFNAME "vx1\0"
      8, 0, 4, 0, ...le32(1376), // IFLA_MTU
      76, 0, 18, 0x80, // IFLA_LINKINFO
      10, 0, 1, 0, 0x76, 0x78, 0x6c, 0x61, 0x6e, 0, 0, 0, // IFLA_INFO_KIND "vxlan\0"
      60, 0, 2, 0x80, // IFLA_INFO_DATA
      8, 0, 1, 0, 0x01, 0x20, 0, 0, // IFLA_VXLAN_ID 0x002001
      6, 0, 15, 0, 0x1a, 0x80, 0, 0, // IFLA_VXLAN_PORT be16 6784
      8, 0, 4, 0, 198, 18, 0, 1, // IFLA_VXLAN_LOCAL
      5, 0, 7, 0, 0, 0, 0, 0, // IFLA_VXLAN_LEARNING 0
      5, 0, 5, 0, 64, 0, 0, 0, // IFLA_VXLAN_TTL 64
      5, 0, 29, 0, 1, 0, 0, 0, // IFLA_VXLAN_DF set
      5, 0, 18, 0, 0, 0, 0, 0, // IFLA_VXLAN_UDP_CSUM 0
    ]); // prettier-ignore
  });

  it("VXLAN df variants, checksums and learning on parse back; bad ttl is refused", () => {
    const data = (o: Parameters<typeof buildNewVxlan>[0]) =>
      parseAttributes(one(buildNewVxlan(o)).payload, IFINFOMSG_SIZE)
        .nested(IFLA_LINKINFO)!
        .nested(IFLA_INFO_DATA)!;
    const inherit = data({ name: "v", vni: 1, df: "inherit", udpCsum: true, learning: true });
    expect(inherit.u8(IFLA_VXLAN_DF)).toBe(VXLAN_DF_INHERIT);
    expect(inherit.u8(IFLA_VXLAN_UDP_CSUM)).toBe(1);
    expect(inherit.u8(IFLA_VXLAN_LEARNING)).toBe(1);
    expect(data({ name: "v", vni: 1, df: false }).u8(IFLA_VXLAN_DF)).toBe(VXLAN_DF_UNSET);
    const plain = data({ name: "v", vni: 1 });
    for (const t of [IFLA_VXLAN_DF, IFLA_VXLAN_TTL, IFLA_VXLAN_UDP_CSUM, IFLA_VXLAN_LEARNING]) {
      expect(plain.has(t)).toBe(false);
    }
    for (const ttl of [0, 256, 1.5, -1]) {
      expect(() => buildNewVxlan({ name: "v", vni: 1, ttl })).toThrow(RangeError);
    }
    expect(data({ name: "v", vni: 1, ttl: 255 }).u8(IFLA_VXLAN_TTL)).toBe(255);
  });

  it("bridge-port flags: RTM_SETLINK, AF_BRIDGE, IFLA_PROTINFO nested, byte-exact", () => {
    const b = buildSetBridgePort({ index: 7, isolated: true, learning: false }, 3);
    expect([...b]).toEqual([
      ...le32(52), ...le16(RTM_SETLINK), ...le16(NLM_F_REQUEST | NLM_F_ACK), ...le32(3), ...le32(0),
      7, 0, 0, 0, ...le32(7), ...le32(0), ...le32(0), // ifinfomsg, family AF_BRIDGE
      20, 0, 12, 0x80, // IFLA_PROTINFO | NLA_F_NESTED
      5, 0, 8, 0, 0, 0, 0, 0, // IFLA_BRPORT_LEARNING 0
      5, 0, 33, 0, 1, 0, 0, 0, // IFLA_BRPORT_ISOLATED 1
    ]); // prettier-ignore
    expect([...buildSetBridgePort({ index: 7, flush: true }, 4)]).toEqual([
      ...le32(40), ...le16(RTM_SETLINK), ...le16(NLM_F_REQUEST | NLM_F_ACK), ...le32(4), ...le32(0),
      7, 0, 0, 0, ...le32(7), ...le32(0), ...le32(0),
      8, 0, 12, 0x80,
      4, 0, 24, 0, // IFLA_BRPORT_FLUSH (flag)
    ]); // prettier-ignore
    const all = parseAttributes(
      one(buildSetBridgePort({ index: 2, isolated: false, learning: true, unicastFlood: false }))
        .payload,
      IFINFOMSG_SIZE,
    ).nested(IFLA_PROTINFO)!;
    expect(all.list.map((a) => [a.type, a.value[0]])).toEqual([
      [IFLA_BRPORT_LEARNING, 1],
      [IFLA_BRPORT_UNICAST_FLOOD, 0],
      [IFLA_BRPORT_ISOLATED, 0],
    ]);
    expect(() => buildSetBridgePort({ index: 2 })).toThrow(RangeError);
    expect(() => buildSetBridgePort({ index: 2, flush: false })).toThrow(RangeError);
    expect(() => buildSetBridgePort({ index: 0, isolated: true })).toThrow(RangeError);
  });

  it("get one link by name or index is byte-exact", () => {
    expect([...buildGetLink({ name: "vx1" }, 2)]).toEqual([
      ...le32(40), ...le16(RTM_GETLINK), ...le16(NLM_F_REQUEST | NLM_F_ACK), ...le32(2), ...le32(0),
      ...Array<number>(16).fill(0),
      8, 0, 3, 0, 0x76, 0x78, 0x31, 0,
    ]); // prettier-ignore
    expect([...buildGetLink({ index: 9 }, 3)]).toEqual([
      ...le32(32), ...le16(RTM_GETLINK), ...le16(NLM_F_REQUEST | NLM_F_ACK), ...le32(3), ...le32(0),
      0, 0, 0, 0, ...le32(9), ...le32(0), ...le32(0),
    ]); // prettier-ignore
    expect(() => buildGetLink({ name: "x/y" })).toThrow(RangeError);
    expect(() => buildGetLink({ index: 0 })).toThrow(RangeError);
  });

  it("FDB dump request is byte-exact: ifinfomsg, AF_BRIDGE, the device's index", () => {
    expect([...buildGetFdbDump(7, 4)]).toEqual([
      ...le32(32), ...le16(RTM_GETNEIGH), ...le16(NLM_F_REQUEST | NLM_F_DUMP), ...le32(4),
      ...le32(0), 7, 0, 0, 0, ...le32(7), ...le32(0), ...le32(0),
    ]); // prettier-ignore
    expect([...buildGetFdbDump(undefined, 4)]).toEqual([
      ...le32(32), ...le16(RTM_GETNEIGH), ...le16(NLM_F_REQUEST | NLM_F_DUMP), ...le32(4),
      ...le32(0), 7, 0, 0, 0, ...le32(0), ...le32(0), ...le32(0),
    ]); // prettier-ignore
    expect(() => buildGetFdbDump(-3)).toThrow(RangeError);
  });

  it("FDB entry with remote VNI and port on a vxlan device is byte-exact", () => {
    const b = buildFdbAdd(
      { ifindex: 7, lladdr: "00:00:00:00:00:00", dst: "198.18.0.2", vni: 0x001002, port: 4789 },
      "append",
      8,
    );
    expect([...b]).toEqual([
      ...le32(64), ...le16(RTM_NEWNEIGH), ...le16(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND),
      ...le32(8), ...le32(0),
      7, 0, 0, 0, ...le32(7), 0x80, 0, 2, 0, // ndmsg
      10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, // NDA_LLADDR
      8, 0, 1, 0, 198, 18, 0, 2, // NDA_DST
      8, 0, 7, 0, 0x02, 0x10, 0, 0, // NDA_VNI u32 0x001002
      6, 0, 6, 0, 0x12, 0xb5, 0, 0, // NDA_PORT be16 4789
    ]); // prettier-ignore
    for (const port of [0, 65536, 1.5]) {
      expect(() => buildFdbAdd({ ifindex: 7, lladdr: "00:00:00:00:00:00", port })).toThrow(
        RangeError,
      );
    }
  });

  const selfEntry = rawMsg(RTM_NEWNEIGH, NLM_F_MULTI, 4, [
    ...rawNdmsg(AF_BRIDGE, 5, NUD_PERMANENT, NTF_SELF),
    ...rawAttr(NDA_LLADDR, [0, 0, 0, 0, 0, 0]),
    ...rawAttr(NDA_DST, [198, 18, 0, 2]),
    ...rawAttr(NDA_PORT, [0x12, 0xb5]),
    ...rawAttr(NDA_VNI, le32(0x001002)),
    ...rawAttr(3, Array<number>(16).fill(1)), // NDA_CACHEINFO: ignored
  ]);
  const learned = rawMsg(RTM_NEWNEIGH, NLM_F_MULTI, 4, [
    ...rawNdmsg(AF_BRIDGE, 5, 0x02, NTF_MASTER),
    ...rawAttr(NDA_LLADDR, [0xaa, 0xbb, 0xcc, 0, 0, 1]),
    ...rawAttr(NDA_VLAN, le16(1)),
    ...rawAttr(NDA_MASTER, le32(4)),
  ]);
  const arp = rawMsg(RTM_NEWNEIGH, NLM_F_MULTI, 4, [
    ...rawNdmsg(AF_INET, 5, 0x02, 0),
    ...rawAttr(NDA_DST, [198, 18, 0, 9]),
  ]);
  const done = rawMsg(NLMSG_DONE, NLM_F_MULTI, 4, le32(0));

  it("parses an FDB dump: the vxlan's own remotes and the bridge's entries", () => {
    const msgs = parseMessages(Buffer.from([...selfEntry, ...learned, ...arp, ...done]));
    expect(parseFdbDump(msgs)).toEqual({
      done: true,
      entries: [
        {
          family: AF_BRIDGE,
          ifindex: 5,
          state: NUD_PERMANENT,
          flags: NTF_SELF,
          type: 0,
          lladdr: "00:00:00:00:00:00",
          dst: "198.18.0.2",
          port: 4789,
          vni: 0x001002,
        },
        {
          family: AF_BRIDGE,
          ifindex: 5,
          state: 0x02,
          flags: NTF_MASTER,
          type: 0,
          lladdr: "aa:bb:cc:00:00:01",
          vlan: 1,
          master: 4,
        },
      ],
    });
    expect(parseFdbDump(parseMessages(Buffer.from(selfEntry))).done).toBe(false);
  });

  it("surfaces FDB dump errors and malformed entries as NetlinkError", () => {
    const err = rawMsg(NLMSG_ERROR, 0, 4, [
      ...le32(-95 >>> 0),
      ...rawMsg(RTM_GETNEIGH, 0x301, 4, []),
    ]);
    expect(() => parseFdbDump(parseMessages(Buffer.from(err)))).toThrow(
      /fdb dump failed: errno 95/,
    );
    const doneErr = rawMsg(NLMSG_DONE, NLM_F_MULTI, 4, le32(-16 >>> 0));
    expect(() => parseFdbDump(parseMessages(Buffer.from(doneErr)))).toThrow(NetlinkError);
    const bad = (attr: number[]) =>
      parseMessages(
        Buffer.from(rawMsg(RTM_NEWNEIGH, 2, 4, [...rawNdmsg(AF_BRIDGE, 5, 0x80, 2), ...attr])),
      );
    expect(() => parseFdbDump(bad(rawAttr(NDA_LLADDR, [1, 2, 3])))).toThrow(NetlinkError);
    expect(() => parseFdbDump(bad(rawAttr(NDA_VNI, [1, 2])))).toThrow(NetlinkError);
    expect(() => parseFdbDump(bad(rawAttr(NDA_PORT, [1, 2, 3])))).toThrow(NetlinkError);
    expect(() => parseFdbDump(bad(rawAttr(NDA_VLAN, [1])))).toThrow(NetlinkError);
    const short = rawMsg(RTM_NEWNEIGH, 2, 4, [7, 0, 0, 0, 5, 0]);
    expect(() => parseFdbDump(parseMessages(Buffer.from(short)))).toThrow(NetlinkError);
  });

  it("reads a VXLAN link's VNI, port and local address from a link message", () => {
    const vx = rawMsg(RTM_NEWLINK, 0, 1, [
      ...rawIfinfo(8, 0x1043),
      ...rawAttr(IFLA_IFNAME, str("wvx")),
      ...rawAttr(IFLA_MTU, le32(1376)),
      ...nested(IFLA_LINKINFO, [
        ...rawAttr(IFLA_INFO_KIND, str("vxlan")),
        ...nested(IFLA_INFO_DATA, [
          ...rawAttr(IFLA_VXLAN_ID, le32(0x002001)),
          ...rawAttr(IFLA_VXLAN_LOCAL, [198, 18, 0, 1]),
          ...rawAttr(IFLA_VXLAN_PORT, [0x1a, 0x80]),
          ...rawAttr(IFLA_VXLAN_TTL, [64]),
        ]),
      ]),
    ]);
    expect(parseLinkMessage(one(Buffer.from(vx)))).toEqual({
      index: 8,
      name: "wvx",
      flags: 0x1043,
      mtu: 1376,
      kind: "vxlan",
      vxlan: { vni: 0x002001, port: 6784, local: "198.18.0.1" },
    });
    const badId = rawMsg(RTM_NEWLINK, 0, 1, [
      ...rawIfinfo(8, 0),
      ...rawAttr(IFLA_IFNAME, str("wvx")),
      ...rawAttr(IFLA_MTU, le32(1376)),
      ...nested(IFLA_LINKINFO, [
        ...rawAttr(IFLA_INFO_KIND, str("vxlan")),
        ...nested(IFLA_INFO_DATA, rawAttr(IFLA_VXLAN_ID, [1, 2])),
      ]),
    ]);
    expect(() => parseLinkMessage(one(Buffer.from(badId)))).toThrow(NetlinkError);
  });

  it("arbitrary FDB and VXLAN link payloads only throw NetlinkError", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 120 }),
        fc.uint8Array({ maxLength: 80 }),
        (body, data) => {
          const neigh = parseMessages(
            Buffer.from(rawMsg(RTM_NEWNEIGH, 2, 1, [...rawNdmsg(AF_BRIDGE, 3, 0x80, 2), ...body])),
          );
          try {
            parseFdbDump(neigh);
          } catch (e) {
            expect(e).toBeInstanceOf(NetlinkError);
          }
          try {
            parseFdbDump(parseMessages(Buffer.from(rawMsg(RTM_NEWNEIGH, 2, 1, [...body]))));
          } catch (e) {
            expect(e).toBeInstanceOf(NetlinkError);
          }
          const link = rawMsg(RTM_NEWLINK, 0, 1, [
            ...rawIfinfo(8, 0),
            ...rawAttr(IFLA_IFNAME, str("wvx")),
            ...rawAttr(IFLA_MTU, le32(1376)),
            ...nested(IFLA_LINKINFO, [
              ...rawAttr(IFLA_INFO_KIND, str("vxlan")),
              ...nested(IFLA_INFO_DATA, [...data]),
            ]),
          ]);
          try {
            parseLinkMessage(one(Buffer.from(link)));
          } catch (e) {
            expect(e).toBeInstanceOf(NetlinkError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Endpoint attachment (weft attach): veth, namespaces, names, MACs, IPv4 addresses, routes.
//
// The request bytes below are what iproute2 6.1.0 sent for the `ip` command named in each test,
// captured on the development host (kernel 6.18.44-fc-v669, x86_64) in throwaway namespaces
// with `strace -f -e trace=sendmsg,sendto -e write=all -xx ip ...` (the last request of each
// command; the ones before it are iproute2's name look-ups). Our builders are given iproute2's
// sequence number (0x6b06f85d and neighbours) and must produce the same bytes, except where
// `fromIproute2` says: NLA_F_NESTED on nests (iproute2 leaves it off) and, for look-ups,
// NLM_F_ACK (NetlinkSocket waits for the ACK). Namespace fds are the numbers iproute2 had open.
//
// The replies (address dump, namespace ids, the link ethwe) were captured the same way
// (`-e read=all`, recvmsg) from namespaces set up as `weft attach` leaves them: in namespace A
// `ip link add vethwepl1 mtu 1376 type veth peer name vethwepg1 mtu 1376 address
// 02:00:c6:13:05:01 netns B`; in B the peer renamed to ethwe, lo and ethwe up,
// `ip addr add 198.19.5.1/24 brd + dev ethwe`, `ip addr add 198.19.6.1/30 brd + dev ethwe`.

/** iproute2's request (hex), with NLA_F_NESTED set on the nests at `nested` (byte offsets of
 * their nlattr headers) and nlmsg_flags replaced by `flags` when given. */
function fromIproute2(hex: string, opts: { nested?: number[]; flags?: number } = {}): number[] {
  const b = Buffer.from(hex.replace(/\s+/g, ""), "hex");
  for (const off of opts.nested ?? [])
    b.writeUInt16LE(b.readUInt16LE(off + 2) | NLA_F_NESTED, off + 2);
  if (opts.flags !== undefined) b.writeUInt16LE(opts.flags, 6);
  return [...b];
}

const SEQ = 0x6b06f85d;

describe("endpoint builders: the bytes iproute2 6.1 sends", () => {
  it("constants match linux/rtnetlink.h, if_link.h, veth.h, if_addr.h, net_namespace.h", () => {
    expect([RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_DELROUTE]).toEqual([
      20, 21, 22, 24, 25,
    ]);
    expect([RTM_NEWNSID, RTM_GETNSID]).toEqual([88, 90]);
    expect([IFLA_ADDRESS, IFLA_LINK, IFLA_NET_NS_PID, IFLA_NET_NS_FD, IFLA_LINK_NETNSID]).toEqual([
      1, 5, 19, 28, 37,
    ]);
    expect(VETH_INFO_PEER).toBe(1);
    expect([IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS]).toEqual([1, 2, 3, 4, 8]);
    expect([RTA_DST, RTA_OIF, RTA_TABLE, RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST]).toEqual([
      1, 4, 15, 254, 3, 1,
    ]);
    expect([RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE]).toEqual([
      0, 253, 254, 255,
    ]);
    expect([NETNSA_NSID, NETNSA_PID, NETNSA_FD, NETNSA_NSID_NOT_ASSIGNED]).toEqual([1, 2, 3, -1]);
  });

  it("ifaddrmsg (8 bytes) and rtmsg (12 bytes) round trip", () => {
    const a = encodeIfaddrmsg({ family: 2, prefixLength: 24, flags: 0x80, scope: 253, index: 7 });
    expect([...a]).toEqual([2, 24, 0x80, 253, 7, 0, 0, 0]);
    expect(IFADDRMSG_SIZE).toBe(8);
    expect(parseIfaddrmsg(a)).toEqual({
      family: 2,
      prefixLength: 24,
      flags: 0x80,
      scope: 253,
      index: 7,
    });
    expect(() => parseIfaddrmsg(a.subarray(0, 7))).toThrow(NetlinkError);
    const h = {
      family: 2,
      dstLength: 4,
      srcLength: 0,
      tos: 0,
      table: 254,
      protocol: 3,
      scope: 253,
      type: 1,
      flags: 0x10000,
    };
    const r = encodeRtmsg(h);
    expect([...r]).toEqual([2, 4, 0, 0, 254, 3, 253, 1, 0, 0, 1, 0]);
    expect(RTMSG_SIZE).toBe(12);
    expect(parseRtmsg(r)).toEqual(h);
    expect(() => parseRtmsg(r.subarray(0, 11))).toThrow(NetlinkError);
  });

  it("ip link add vethwepl123 mtu 1376 type veth peer name vethwepg123 mtu 1376", () => {
    const b = buildNewVeth(
      { name: "vethwepl123", mtu: 1376, peer: { name: "vethwepg123", mtu: 1376 } },
      SEQ,
    );
    expect([...b]).toEqual(
      fromIproute2(
        `74000000100005065df8066b000000000000000000000000000000000000000008000400600500001000030076657468
         7765706c313233003c0012000800010076657468300002002c0001000000000000000000000000000000000008000400
         6005000010000300766574687765706731323300`,
        { nested: [0x38, 0x44] },
      ),
    );
  });

  it("... peer ... address 02:11:22:33:44:55, and with netns (fd 4) too", () => {
    const peer = { name: "vethwepg124", mtu: 1376, address: "02:11:22:33:44:55" };
    expect([...buildNewVeth({ name: "vethwepl124", mtu: 1376, peer }, SEQ)]).toEqual(
      fromIproute2(
        `80000000100005065df8066b000000000000000000000000000000000000000008000400600500001000030076657468
         7765706c313234004800120008000100766574683c000200380001000000000000000000000000000000000008000400
         600500000a000100021122334455000010000300766574687765706731323400`,
        { nested: [0x38, 0x44] },
      ),
    );
    const inNs = {
      name: "vethwepg125",
      mtu: 1376,
      address: "02:11:22:33:44:66",
      netns: { fd: 4 },
    };
    expect([...buildNewVeth({ name: "vethwepl125", mtu: 1376, peer: inNs }, 0x6b06f8b1)]).toEqual(
      fromIproute2(
        `8800000010000506b1f8066b000000000000000000000000000000000000000008000400600500001000030076657468
         7765706c3132350050001200080001007665746844000200400001000000000000000000000000000000000008000400
         600500000a000100021122334466000008001c000400000010000300766574687765706731323500`,
        { nested: [0x38, 0x44] },
      ),
    );
  });

  it("a veth with nothing but a name: the kernel names the peer; the host end's MAC", () => {
    const m = one(buildNewVeth({ name: "v0", address: "02:00:00:00:00:01" }));
    const a = parseAttributes(m.payload, IFINFOMSG_SIZE);
    expect(a.list.map((x) => x.type)).toEqual([IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINKINFO]);
    const peer = a.nested(IFLA_LINKINFO)!.nested(IFLA_INFO_DATA)!.get(VETH_INFO_PEER)!;
    expect([...peer]).toEqual(Array<number>(16).fill(0));
  });

  it("ip link set dev X netns FD|PID [name ethwe]", () => {
    expect([...buildMoveLink({ index: 2, netns: { fd: 4 } }, SEQ)]).toEqual(
      fromIproute2(
        "28000000100005005df8066b000000000000000002000000000000000000000008001c0004000000",
      ),
    );
    expect([...buildMoveLink({ index: 4, netns: { fd: 4 }, name: "ethwe" }, SEQ)]).toEqual(
      fromIproute2(
        `34000000100005005df8066b000000000000000004000000000000000000000008001c00040000000a000300
         6574687765000000`,
      ),
    );
    expect([...buildMoveLink({ index: 6, netns: { pid: 1 } }, SEQ)]).toEqual(
      fromIproute2(
        "28000000100005005df8066b00000000000000000600000000000000000000000800130001000000",
      ),
    );
  });

  it("ip link set dev X name ethx; ip link set dev X address 02:aa:bb:cc:dd:ee", () => {
    expect([...buildRenameLink({ index: 2, name: "ethx" }, SEQ)]).toEqual(
      fromIproute2(
        "2c000000100005005df8066b0000000000000000020000000000000000000000090003006574687800000000",
      ),
    );
    expect([...buildSetLinkAddress({ index: 2, address: "02:aa:bb:cc:dd:ee" }, SEQ + 1)]).toEqual(
      fromIproute2(
        "2c000000100005005ef8066b00000000000000000200000000000000000000000a00010002aabbccddee0000",
      ),
    );
  });

  it("ip addr add 198.19.5.1/24 dev ethwe; ... 198.19.6.1/24 brd + ...; ip addr del ...", () => {
    expect([
      ...buildNewAddress({ index: 4, address: "198.19.5.1", prefixLength: 24 }, SEQ),
    ]).toEqual(
      fromIproute2(
        "28000000140005065df8066b00000000021800000400000008000200c613050108000100c6130501",
      ),
    );
    const brd = { index: 4, address: "198.19.6.1", prefixLength: 24, broadcast: "198.19.6.255" };
    expect([...buildNewAddress(brd, SEQ)]).toEqual(
      fromIproute2(
        `30000000140005065df8066b00000000021800000400000008000200c613060108000100c613060108000400
         c61306ff`,
      ),
    );
    expect([
      ...buildDelAddress({ index: 4, address: "198.19.6.1", prefixLength: 24 }, SEQ),
    ]).toEqual(
      fromIproute2(
        "28000000150005005df8066b00000000021800000400000008000200c613060108000100c6130601",
      ),
    );
  });

  it("ip route add|del 224.0.0.0/4 dev ethwe", () => {
    const r = { dst: "224.0.0.0", prefixLength: 4, oif: 4 };
    expect([...buildNewRoute(r, SEQ)]).toEqual(
      fromIproute2(
        "2c000000180005065df8066b0000000002040000fe03fd010000000008000100e00000000800040004000000",
      ),
    );
    expect([...buildDelRoute(r, SEQ)]).toEqual(
      fromIproute2(
        "2c000000190005005df8066b0000000002040000fe00ff000000000008000100e00000000800040004000000",
      ),
    );
  });

  it("ip -4 addr show (the dump); ip addr show's namespace id request, with an ACK", () => {
    expect([...buildGetAddressDump(AF_INET, 0x6b06f86c)]).toEqual(
      fromIproute2("18000000160001036cf8066b000000000200000000000000"),
    );
    expect(one(buildGetAddressDump()).type).toBe(RTM_GETADDR);
    expect([...buildGetNsid(6, SEQ)]).toEqual(
      fromIproute2("1c0000005a0001005df8066b00000000000000000800030006000000", {
        flags: NLM_F_REQUEST | NLM_F_ACK,
      }),
    );
  });

  it("refuses what the kernel would (or should) refuse, before sending", () => {
    expect(() => buildNewVeth({ name: "a-much-too-long-name" })).toThrow(RangeError);
    expect(() => buildNewVeth({ name: "v", peer: { name: "x y" } })).toThrow(RangeError);
    for (const mtu of [0, 67, 65536, 1.5]) {
      expect(() => buildNewVeth({ name: "v", mtu })).toThrow(/bad MTU/);
      expect(() => buildNewVeth({ name: "v", peer: { mtu } })).toThrow(/bad MTU/);
    }
    expect(() => buildNewVeth({ name: "v", peer: { address: "02:00" } })).toThrow(/bad MAC/);
    for (const fd of [-1, 1.5, 2 ** 31]) {
      expect(() => buildNewVeth({ name: "v", peer: { netns: { fd } } })).toThrow(RangeError);
      expect(() => buildMoveLink({ index: 1, netns: { fd } })).toThrow(/bad namespace fd/);
      expect(() => buildGetNsid(fd)).toThrow(/bad namespace fd/);
    }
    expect(() => buildMoveLink({ index: 1, netns: { pid: 0 } })).toThrow(/bad namespace pid/);
    expect(() => buildMoveLink({ index: 0, netns: { pid: 1 } })).toThrow(/bad ifindex/);
    expect(() => buildMoveLink({ index: 1, netns: { pid: 1 }, name: "" })).toThrow(RangeError);
    expect(() => buildRenameLink({ index: 1, name: "a/b" })).toThrow(RangeError);
    expect(() => buildSetLinkAddress({ index: 1, address: "zz:00:00:00:00:00" })).toThrow(
      RangeError,
    );
    const a = { index: 4, address: "198.19.5.1", prefixLength: 24 };
    expect(() => buildNewAddress({ ...a, prefixLength: 33 })).toThrow(/prefix length/);
    expect(() => buildNewAddress({ ...a, address: "198.19.5" })).toThrow(/bad IPv4/);
    expect(() => buildNewAddress({ ...a, broadcast: "1.2.3.256" })).toThrow(/bad IPv4/);
    expect(() => buildDelAddress({ ...a, index: 0 })).toThrow(/bad ifindex/);
    const r = { dst: "224.0.0.0", prefixLength: 4, oif: 4 };
    expect(() => buildNewRoute({ ...r, dst: "224.0.0.1" })).toThrow(/host bits/);
    expect(() => buildNewRoute({ ...r, prefixLength: -1 })).toThrow(/prefix length/);
    expect(() => buildDelRoute({ ...r, oif: 0 })).toThrow(/bad ifindex/);
    expect([
      ...one(buildNewRoute({ dst: "10.1.2.3", prefixLength: 32, oif: 1 })).payload.subarray(16, 20),
    ]).toEqual([10, 1, 2, 3]);
    expect(() => buildNewRoute({ dst: "0.0.0.0", prefixLength: 0, oif: 1 })).not.toThrow();
  });
});

/** Hex with any whitespace → a datagram. */
const hexBuf = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** `ip -4 addr show` in B: lo's 127.0.0.1/8 and ethwe's two addresses, then NLMSG_DONE. */
const ADDR_DUMP = hexBuf(`
    4c00000014000200f1f9066b2f4a0000020880fe01000000080001007f000001080002007f000001070003006c6f0000
    080008008000000014000600ffffffffffffffff1af110001af110005800000014000200f1f9066b2f4a000002188000
    0200000008000100c613050108000200c613050108000400c61305ff0a00030065746877650000000800080080000000
    14000600ffffffffffffffff1af110001af110005800000014000200f1f9066b2f4a0000021e80000200000008000100
    c613060108000200c613060108000400c61306030a0003006574687765000000080008008000000014000600ffffffff
    ffffffff1af110001af11000
`);
const ADDR_DONE = hexBuf("1400000003000200f1f9066b2f4a000000000000");
/** RTM_NEWNSID answers to RTM_GETNSID: B as seen from A (id 0), and a namespace with none. */
const NSID_0 = hexBuf("1c00000058000000f1f9066b67c8ebc1000000000800010000000000");
const NSID_NONE = hexBuf("1c00000058000000f2f9066b67c8ebc10000000008000100ffffffff");
/** RTM_GETLINK ethwe in B: a veth whose peer is ifindex 2 in namespace id 0 (A). */
const ETHWE_LINK = hexBuf(`
    7004000010000000f0f9066b038ff48f000001000200000043100100000000000a000300657468776500000008000d00
    e80300000500100006000000050011000000000005004300000000000800040060050000080032004400000008003300
    ffff000008001b000000000008001e000000000008003d000000000008001f000200000008002800ffff000008002900
    0000010008003a000000010008003f0000000100080040000000010008003b00f8ff070008003c00ffff000008004200
    0000000008002000020000000500210001000000080023000200000008002f0001000000080030000100000006004400
    00000000060045000000000005002700000000000a0001000200c613050100000a000200ffffffffffff0000cc001700
    0000000000000000010000000000000000000000000000005a0000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    0000000000000000640007000000000001000000000000005a0000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    0000000000000000000000000c002b000500020000000000100012000900010076657468000000000800250000000000
    08000500020000000c0006006e6f717565756500c0011a008c0002008800010000000000000000000000000001000000
    010000000100000001000000000000000100000000000000000000000000000000000000000000000000000000000000
    0000000000000000000000000000000000000000000000000000000000000000000000000000000010270000e8030000
    000000000000000000000000000000000100000030010a00080001000000008014000500ffff000019f1100008650000
    e8030000f400020000000000400000006005000001000000010000000100000001000000ffffffffa00f0000e8030000
    00000000803a0900805101000300000058020000100000000000000001000000010000000100000060ea000000000000
    000000000000000000000000000000000000000001000000000000000000000010270000e80300000100000000000000
    00000000010000000000000000000000010000000000000000000000000000000000000080ee36000000000000000000
    0100000000000000000000000000000000000000000000000004000000000000ffff0000ffffffff0100000000000000
    00000000000000001400070000000000000000000000000000000000050008000000000024000e000000000000000000
    00000000000000000000000000000000000000000000000004003e8004004180
`);

describe(`endpoint replies (kernel 6.18.44-fc-v669)`, () => {
  it("the address dump: lo, then ethwe's two subnets with their broadcast addresses", () => {
    const dump = parseAddressDump(parseMessages(Buffer.concat([ADDR_DUMP, ADDR_DONE])));
    expect(dump.done).toBe(true);
    const common = { family: AF_INET, flags: 0x80 }; // IFA_F_PERMANENT
    expect(dump.addresses).toEqual([
      {
        ...common,
        prefixLength: 8,
        scope: RT_SCOPE_HOST,
        index: 1,
        address: "127.0.0.1",
        local: "127.0.0.1",
        label: "lo",
      },
      {
        ...common,
        prefixLength: 24,
        scope: RT_SCOPE_UNIVERSE,
        index: 2,
        address: "198.19.5.1",
        local: "198.19.5.1",
        broadcast: "198.19.5.255",
        label: "ethwe",
      },
      {
        ...common,
        prefixLength: 30,
        scope: RT_SCOPE_UNIVERSE,
        index: 2,
        address: "198.19.6.1",
        local: "198.19.6.1",
        broadcast: "198.19.6.3",
        label: "ethwe",
      },
    ]);
    expect(parseAddressDump(parseMessages(ADDR_DUMP)).done).toBe(false);
  });

  it("namespace ids: 0, and -1 for none", () => {
    expect(parseNsidMessage(one(NSID_0))).toBe(0);
    expect(parseNsidMessage(one(NSID_NONE))).toBe(NETNSA_NSID_NOT_ASSIGNED);
    expect(() => parseNsidMessage(one(ADDR_DONE))).toThrow(NetlinkError);
    const empty = Buffer.from(rawMsg(RTM_NEWNSID, 0, 1, [0, 0, 0, 0]));
    expect(() => parseNsidMessage(one(empty))).toThrow(/missing/);
    const tiny = Buffer.from(rawMsg(RTM_NEWNSID, 0, 1, []));
    expect(() => parseNsidMessage(one(tiny))).toThrow(NetlinkError);
  });

  it("the link ethwe: its MAC, and its peer (ifindex 2 in namespace id 0)", () => {
    expect(parseLinkDetails(one(ETHWE_LINK))).toEqual({
      index: 2,
      name: "ethwe",
      flags: 0x11043,
      mtu: 1376,
      kind: "veth",
      address: "02:00:c6:13:05:01",
      link: 2,
      linkNetnsid: 0,
    });
  });

  it("our own requests decode as the kernel's messages do", () => {
    const add = one(
      buildNewAddress({ index: 9, address: "10.2.2.7", prefixLength: 24, broadcast: "10.2.2.255" }),
    );
    expect(parseAddressMessage(add)).toEqual({
      family: AF_INET,
      prefixLength: 24,
      flags: 0,
      scope: 0,
      index: 9,
      local: "10.2.2.7",
      address: "10.2.2.7",
      broadcast: "10.2.2.255",
    });
    const del = one(buildDelAddress({ index: 9, address: "10.2.2.7", prefixLength: 24 }));
    expect(del.type).toBe(RTM_DELADDR);
    expect(parseAddressMessage(del).broadcast).toBeUndefined();
    const route = one(buildNewRoute({ dst: "224.0.0.0", prefixLength: 4, oif: 3 }));
    expect(route.type).toBe(RTM_NEWROUTE);
    expect(parseRtmsg(route.payload)).toMatchObject({
      table: RT_TABLE_MAIN,
      protocol: RTPROT_BOOT,
      scope: RT_SCOPE_LINK,
      type: RTN_UNICAST,
    });
    const del2 = one(buildDelRoute({ dst: "224.0.0.0", prefixLength: 4, oif: 3 }));
    expect([del2.type, parseRtmsg(del2.payload).scope]).toEqual([RTM_DELROUTE, RT_SCOPE_NOWHERE]);
    const nsid = one(buildGetNsid(5));
    expect(nsid.type).toBe(RTM_GETNSID);
    expect(parseAttributes(nsid.payload, 4).u32(NETNSA_FD)).toBe(5);
    const move = one(buildMoveLink({ index: 3, netns: { pid: 77 } }));
    expect(parseAttributes(move.payload, IFINFOMSG_SIZE).u32(IFLA_NET_NS_PID)).toBe(77);
    const moveFd = one(buildMoveLink({ index: 3, netns: { fd: 9 } }));
    expect(parseAttributes(moveFd.payload, IFINFOMSG_SIZE).u32(IFLA_NET_NS_FD)).toBe(9);
  });

  it("malformed addresses, links and ids are NetlinkErrors", () => {
    const addr = (hdr: number[], attrs: number[]) =>
      parseMessages(Buffer.from(rawMsg(RTM_NEWADDR, 2, 1, [...hdr, ...attrs])));
    const v4 = [AF_INET, 24, 0, 0, ...le32(2)];
    expect(() => parseAddressDump(addr(v4, rawAttr(IFA_LOCAL, [1, 2, 3])))).toThrow(/local of 3/);
    expect(() => parseAddressDump(addr(v4, rawAttr(IFA_BROADCAST, [1, 2, 3, 4, 5])))).toThrow(
      NetlinkError,
    );
    expect(() => parseAddressDump(addr(v4, rawAttr(IFA_FLAGS, [1])))).toThrow(NetlinkError);
    expect(() => parseAddressDump(addr([AF_INET, 33, 0, 0, ...le32(2)], []))).toThrow(/prefix/);
    expect(() => parseAddressDump(addr([AF_INET, 24, 0], []))).toThrow(NetlinkError);
    // IPv6 addresses are passed over, not misread as IPv4.
    const v6 = parseAddressDump(
      addr([10, 64, 0, 0, ...le32(2)], rawAttr(IFA_ADDRESS, Array(16).fill(0xfe))),
    );
    expect(v6.addresses[0]).toEqual({ family: 10, prefixLength: 64, flags: 0, scope: 0, index: 2 });
    expect(() => parseAddressMessage(one(NSID_0))).toThrow(/expected RTM_NEWADDR/);
    const err = rawMsg(NLMSG_ERROR, 0, 4, [
      ...le32(-22 >>> 0),
      ...rawMsg(RTM_GETADDR, 0x301, 4, []),
    ]);
    expect(() => parseAddressDump(parseMessages(Buffer.from(err)))).toThrow(
      /address dump failed: errno 22/,
    );
    const badLink = Buffer.from(ETHWE_LINK);
    // IFLA_LINK (at 0x270 in the capture) cut to 3 bytes: wrong size for a u32.
    expect(badLink.readUInt16LE(0x272)).toBe(IFLA_LINK);
    badLink.writeUInt16LE(7, 0x270);
    expect(() => parseLinkDetails(one(badLink))).toThrow(NetlinkError);
  });

  const datagrams = { ADDR_DUMP, ADDR_DONE, NSID_0, NSID_NONE, ETHWE_LINK };
  /** Runs every endpoint parser over `buf`; anything but a NetlinkError fails the test. */
  function parseAll(buf: Buffer): void {
    let msgs: NetlinkMessage[];
    try {
      msgs = parseMessages(buf);
    } catch (e) {
      expect(e).toBeInstanceOf(NetlinkError);
      return;
    }
    const attempts: (() => unknown)[] = [
      () => parseAddressDump(msgs),
      ...msgs.flatMap((m) => [
        () => parseAddressMessage({ ...m, type: RTM_NEWADDR }),
        () => parseNsidMessage({ ...m, type: RTM_NEWNSID }),
        () => parseLinkDetails({ ...m, type: RTM_NEWLINK }),
      ]),
    ];
    for (const attempt of attempts) {
      try {
        attempt();
      } catch (e) {
        expect(e).toBeInstanceOf(NetlinkError);
      }
    }
  }

  it("the captured datagrams parse", () => {
    expect(parseLinkDetails(one(ETHWE_LINK)).name).toBe("ethwe");
    for (const d of Object.values(datagrams)) expect(() => parseMessages(d)).not.toThrow();
  });

  it("every truncation of every captured datagram, declared lengths kept or fixed up", () => {
    for (const d of Object.values(datagrams)) {
      for (let n = 0; n <= d.length; n++) {
        const cut = Buffer.from(d.subarray(0, n));
        parseAll(cut);
        if (n >= 4) {
          cut.writeUInt32LE(n, 0); // nlmsg_len follows the cut: the payload itself is short
          parseAll(cut);
        }
      }
    }
  });

  it("random byte mutations of the captured datagrams only throw NetlinkError", () => {
    const names = Object.keys(datagrams) as (keyof typeof datagrams)[];
    fc.assert(
      fc.property(
        fc.constantFrom(...names),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.option(fc.nat()),
        (name, edits, cut) => {
          const d = Buffer.from(datagrams[name]);
          for (const [at, v] of edits) d[at % d.length] = v;
          parseAll(cut === null ? d : d.subarray(0, cut % (d.length + 1)));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("arbitrary address, namespace-id and link payloads only throw NetlinkError", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 120 }),
        fc.constantFrom(AF_INET, 10, 0),
        (body, family) => {
          parseAll(Buffer.from(rawMsg(RTM_NEWADDR, 2, 1, [family, 24, 0, 0, ...le32(2), ...body])));
          parseAll(Buffer.from(rawMsg(RTM_NEWNSID, 0, 1, [0, 0, 0, 0, ...body])));
          parseAll(
            Buffer.from(
              rawMsg(RTM_NEWLINK, 0, 1, [
                ...rawIfinfo(2, 0),
                ...rawAttr(IFLA_IFNAME, str("ethwe")),
                ...rawAttr(IFLA_MTU, le32(1376)),
                ...body,
              ]),
            ),
          );
        },
      ),
      { numRuns: 3000 },
    );
  });
});
