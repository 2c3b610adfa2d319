import { describe, expect, it } from "vitest";
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
  macBytes,
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
