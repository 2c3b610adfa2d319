import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  MessageBuilder,
  NetlinkError,
  NLA_F_NESTED,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  parseAttributes,
  parseMessages,
  setMessageSeq,
} from "../../../src/fastdp/netlink.js";

/** Hand-rolled little-endian nlmsghdr + payload, independent of MessageBuilder. */
function rawMsg(type: number, flags: number, seq: number, payload: number[], pad = true): number[] {
  const len = 16 + payload.length;
  const out = [
    len & 0xff,
    (len >> 8) & 0xff,
    0,
    0,
    type & 0xff,
    type >> 8,
    flags & 0xff,
    flags >> 8,
    seq & 0xff,
    (seq >> 8) & 0xff,
    0,
    0,
    0x39,
    0x30,
    0,
    0, // pid 12345
    ...payload,
  ];
  while (pad && out.length % 4 !== 0) out.push(0);
  return out;
}

/** Hand-rolled nlattr (LE header, zero padding). */
function rawAttr(type: number, value: number[]): number[] {
  const len = 4 + value.length;
  const out = [len & 0xff, len >> 8, type & 0xff, type >> 8, ...value];
  while (out.length % 4 !== 0) out.push(0);
  return out;
}

function expectNlError(fn: () => unknown, code?: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NetlinkError);
    if (code !== undefined) expect((e as NetlinkError).code).toBe(code);
    return;
  }
  throw new Error("expected NetlinkError");
}

describe("constants", () => {
  it("match linux/netlink.h", () => {
    expect([NLMSG_ERROR, NLMSG_DONE, NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK]).toEqual([
      2, 3, 1, 2, 4,
    ]);
    expect(NLM_F_DUMP).toBe(0x300);
    expect([NLM_F_EXCL, NLM_F_CREATE, NLA_F_NESTED]).toEqual([0x200, 0x400, 0x8000]);
  });
});

describe("MessageBuilder", () => {
  it("writes a little-endian nlmsghdr with nlmsg_len", () => {
    const b = new MessageBuilder(0x1234, NLM_F_REQUEST | NLM_F_ACK, 0xdeadbeef, 7).build();
    expect([...b]).toEqual([16, 0, 0, 0, 0x34, 0x12, 5, 0, 0xef, 0xbe, 0xad, 0xde, 7, 0, 0, 0]);
  });

  it("pads structs and attributes to 4 bytes with zeros", () => {
    const b = new MessageBuilder(20, 1)
      .struct(Buffer.of(9, 9, 9))
      .u8(1, 0xab)
      .u16(2, 0x0102)
      .u16be(3, 0x0102)
      .u32(4, 0x01020304)
      .u32be(5, 0x01020304)
      .string(6, "ab")
      .flag(7)
      .build();
    expect([...b.subarray(16)]).toEqual([
      9, 9, 9, 0,
      5, 0, 1, 0, 0xab, 0, 0, 0,
      6, 0, 2, 0, 2, 1, 0, 0,
      6, 0, 3, 0, 1, 2, 0, 0,
      8, 0, 4, 0, 4, 3, 2, 1,
      8, 0, 5, 0, 1, 2, 3, 4,
      7, 0, 6, 0, 0x61, 0x62, 0, 0,
      4, 0, 7, 0,
    ]); // prettier-ignore
    expect(b.readUInt32LE(0)).toBe(b.length);
    expect(b.length).toBe(16 + 56);
  });

  it("nests with NLA_F_NESTED and inner padding counted in the outer length", () => {
    const m = new MessageBuilder(16, 1);
    const outer = m.beginNested(18);
    m.string(1, "x");
    m.nested(2, (d) => d.u8(3, 1));
    m.endNested(outer);
    const b = m.build();
    expect([...b.subarray(16)]).toEqual([
      24, 0, 0x12, 0x80,
      6, 0, 1, 0, 0x78, 0, 0, 0,
      12, 0, 2, 0x80, 5, 0, 3, 0, 1, 0, 0, 0,
    ]); // prettier-ignore
  });

  it("rejects bad values and misuse", () => {
    const m = new MessageBuilder(16, 1);
    expect(() => m.u8(1, 256)).toThrow(RangeError);
    expect(() => m.u16(1, -1)).toThrow(RangeError);
    expect(() => m.u32(1, 2 ** 32)).toThrow(RangeError);
    expect(() => m.u32(1, 1.5)).toThrow(RangeError);
    expect(() => m.string(1, "a\0b")).toThrow(RangeError);
    expect(() => m.u8(0x8001, 1)).toThrow(RangeError);
    expect(() => m.bytes(1, Buffer.alloc(0xfffc))).toThrow(RangeError);
    const a = m.beginNested(1);
    m.beginNested(2);
    expect(() => m.endNested(a)).toThrow();
    expect(() => m.build()).toThrow();
    expect(() => new MessageBuilder(0x10000, 0)).toThrow(RangeError);
  });

  it("grows past its initial capacity", () => {
    const m = new MessageBuilder(16, 1);
    for (let i = 0; i < 100; i++) m.bytes(1, Buffer.alloc(60, i));
    const b = m.build();
    expect(b.length).toBe(16 + 100 * 64);
    const attrs = parseAttributes(b, 16);
    expect(attrs.size).toBe(100);
    expect(attrs.all(1)[99]?.[0]).toBe(99);
  });

  it("setMessageSeq patches the sequence number", () => {
    const b = new MessageBuilder(16, 1, 1).build();
    setMessageSeq(b, 99);
    expect(parseMessages(b)[0]?.seq).toBe(99);
  });
});

describe("parseMessages", () => {
  it("parses a hand-built multi-part dump terminated by NLMSG_DONE", () => {
    const flags = NLM_F_MULTI;
    const buf = Buffer.from([
      ...rawMsg(16, flags, 5, [1, 2, 3, 4, 5]),
      ...rawMsg(16, flags, 5, [6, 7, 8, 9]),
      ...rawMsg(NLMSG_DONE, flags, 5, [0, 0, 0, 0]),
    ]);
    const msgs = parseMessages(buf);
    expect(msgs.map((m) => [m.type, m.flags, m.seq, m.pid, m.length])).toEqual([
      [16, flags, 5, 12345, 21],
      [16, flags, 5, 12345, 20],
      [NLMSG_DONE, flags, 5, 12345, 20],
    ]);
    expect([...msgs[0]!.payload]).toEqual([1, 2, 3, 4, 5]);
    expect([...msgs[1]!.payload]).toEqual([6, 7, 8, 9]);
    expect(msgs[2]!.doneStatus).toBe(0);
  });

  it("accepts an unpadded final message and an empty buffer", () => {
    expect(parseMessages(Buffer.from(rawMsg(16, 0, 1, [1], false)))).toHaveLength(1);
    expect(parseMessages(Buffer.alloc(0))).toEqual([]);
  });

  it("decodes NLMSG_ERROR into a negative error, errno and original header", () => {
    const original = rawMsg(16, NLM_F_REQUEST | NLM_F_ACK, 42, [], false);
    const err = [0xef, 0xff, 0xff, 0xff]; // -17 (EEXIST)
    const [m] = parseMessages(Buffer.from(rawMsg(NLMSG_ERROR, 0, 42, [...err, ...original])));
    expect(m!.ack).toEqual({
      error: -17,
      errno: 17,
      originalSeq: 42,
      originalType: 16,
      originalPid: 12345,
    });
  });

  it("decodes an ACK (error 0)", () => {
    const [m] = parseMessages(
      Buffer.from(rawMsg(NLMSG_ERROR, 0x100, 7, [0, 0, 0, 0, ...rawMsg(19, 5, 7, [])])),
    );
    expect(m!.ack?.errno).toBe(0);
    expect(m!.ack?.originalSeq).toBe(7);
  });

  it("decodes an extended ACK message", () => {
    const original = rawMsg(16, 5, 3, [1, 2, 3, 4, 5, 6, 7, 8]);
    const msgAttr = rawAttr(NLMSGERR_ATTR_MSG, [...Buffer.from("bad vni\0")]);
    const payload = [0xea, 0xff, 0xff, 0xff, ...original, ...msgAttr]; // -22
    const [m] = parseMessages(Buffer.from(rawMsg(NLMSG_ERROR, NLM_F_ACK_TLVS, 3, payload)));
    expect(m!.ack?.errno).toBe(22);
    expect(m!.ack?.extAckMessage).toBe("bad vni");
  });

  it("rejects truncated and inconsistent lengths with NetlinkError", () => {
    const ok = rawMsg(16, 0, 1, [1, 2, 3, 4]);
    expectNlError(() => parseMessages(Buffer.from(ok.slice(0, 10))), "truncated");
    expectNlError(() => parseMessages(Buffer.from(ok.slice(0, 18))), "truncated");
    const short = [...ok];
    short[0] = 8;
    expectNlError(() => parseMessages(Buffer.from(short)), "bad-length");
    const long = [...ok];
    long[0] = 200;
    expectNlError(() => parseMessages(Buffer.from(long)), "truncated");
    const huge = [...ok];
    huge[3] = 0xff;
    expectNlError(() => parseMessages(Buffer.from(huge)), "truncated");
    expectNlError(() => parseMessages(Buffer.from([...ok, 1, 2, 3])), "truncated");
    // NLMSG_ERROR whose payload cannot hold nlmsgerr
    expectNlError(
      () => parseMessages(Buffer.from(rawMsg(NLMSG_ERROR, 0, 1, [0xff, 0xff, 0xff, 0xff]))),
      "truncated",
    );
    // extended ACK offset past the payload
    const bogus = rawMsg(16, 5, 3, []);
    bogus[0] = 200;
    expectNlError(
      () =>
        parseMessages(
          Buffer.from(rawMsg(NLMSG_ERROR, NLM_F_ACK_TLVS, 3, [0xea, 0xff, 0xff, 0xff, ...bogus])),
        ),
      "truncated",
    );
  });
});

describe("parseAttributes", () => {
  it("splits, masks flag bits and exposes typed getters", () => {
    const buf = Buffer.from([
      0xaa, // leading byte outside the window
      ...rawAttr(3, [...Buffer.from("eth0\0")]),
      ...rawAttr(4, [0xdc, 0x05, 0, 0]),
      ...rawAttr(15, [0x12, 0xb5]),
      ...rawAttr(18 | NLA_F_NESTED, rawAttr(1, [...Buffer.from("vxlan\0")])),
      ...rawAttr(4, [1, 0, 0, 0]),
    ]);
    const a = parseAttributes(buf, 1);
    expect(a.size).toBe(5);
    expect(a.string(3)).toBe("eth0");
    expect(a.u32(4)).toBe(1500);
    expect(a.all(4)).toHaveLength(2);
    expect(a.u16be(15)).toBe(4789);
    expect(a.u16(15)).toBe(0xb512);
    expect(a.list[3]).toMatchObject({ type: 18, nested: true, netByteOrder: false });
    expect(a.nested(18)?.string(1)).toBe("vxlan");
    expect(a.get(99)).toBeUndefined();
    expect(a.u8(99)).toBeUndefined();
    expectNlError(() => a.u8(4), "bad-value");
    expectNlError(() => a.u32be(15), "bad-value");
    expectNlError(() => a.requireU32(99), "missing");
    expectNlError(() => a.requireString(99), "missing");
  });

  it("rejects malformed attribute streams", () => {
    expectNlError(() => parseAttributes(Buffer.from([8, 0, 1, 0, 1, 2])), "truncated");
    expectNlError(() => parseAttributes(Buffer.from([2, 0, 1, 0])), "bad-length");
    expectNlError(() => parseAttributes(Buffer.from([4, 0, 1, 0, 0, 0])), "truncated");
    expectNlError(() => parseAttributes(Buffer.alloc(4), 3, 2), "bad-range");
    expectNlError(() => parseAttributes(Buffer.alloc(4), 0, 5), "bad-range");
    const many = Buffer.from(Array.from({ length: 10 }, () => [4, 0, 1, 0]).flat());
    expect(parseAttributes(many, 0, many.length, 10).size).toBe(10);
    expectNlError(() => parseAttributes(many, 0, many.length, 9), "too-many");
  });
});

describe("fuzzing", () => {
  const onlyNetlinkError = (fn: () => unknown): boolean => {
    try {
      fn();
      return true;
    } catch (e) {
      return e instanceof NetlinkError;
    }
  };

  it("arbitrary bytes into the parsers only throw NetlinkError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const buf = Buffer.from(bytes);
        expect(
          onlyNetlinkError(() => {
            for (const m of parseMessages(buf))
              expect(parseAttributes(m.payload).size).toBeGreaterThanOrEqual(0);
          }),
        ).toBe(true);
        expect(
          onlyNetlinkError(() => {
            const a = parseAttributes(buf);
            for (const at of a.list) {
              a.u8(at.type);
              a.u32(at.type);
              a.string(at.type);
              a.nested(at.type);
            }
          }),
        ).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it("header-shaped random messages (valid lengths, random bodies) only throw NetlinkError", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 2, 3, 16, 28),
        fc.integer({ min: 0, max: 0xffff }),
        fc.uint8Array({ maxLength: 80 }),
        (type, flags, body) => {
          const buf = Buffer.from(rawMsg(type, flags, 1, [...body]));
          expect(onlyNetlinkError(() => parseMessages(buf))).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });

  const attrArb = fc.array(
    fc.record({
      type: fc.integer({ min: 0, max: 0x3fff }),
      value: fc.uint8Array({ maxLength: 40 }),
    }),
    { maxLength: 12 },
  );

  it("builder → parser round trip", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0x10, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.nat(),
        attrArb,
        fc.boolean(),
        (type, flags, seq, attrs, nest) => {
          const m = new MessageBuilder(type, flags, seq, 9);
          const fill = (b: MessageBuilder): void => {
            for (const a of attrs) b.bytes(a.type, a.value);
          };
          if (nest) m.nested(7, fill);
          else fill(m);
          const buf = m.build();
          const msgs = parseMessages(buf);
          expect(msgs).toHaveLength(1);
          const msg = msgs[0]!;
          expect([msg.type, msg.flags, msg.seq, msg.pid, msg.length]).toEqual([
            type,
            flags,
            seq,
            9,
            buf.length,
          ]);
          let parsed = parseAttributes(msg.payload);
          if (nest) {
            expect(parsed.list[0]?.nested).toBe(true);
            parsed = parsed.nested(7)!;
          }
          expect(parsed.list.map((a) => ({ type: a.type, value: [...a.value] }))).toEqual(
            attrs.map((a) => ({ type: a.type, value: [...a.value] })),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it("every strict truncation of valid messages throws NetlinkError", () => {
    fc.assert(
      fc.property(attrArb, fc.integer({ min: 1, max: 3 }), (attrs, count) => {
        const one = (): Buffer => {
          const m = new MessageBuilder(16, NLM_F_MULTI);
          for (const a of attrs) m.bytes(a.type, a.value);
          return m.build();
        };
        const buf = Buffer.concat(Array.from({ length: count }, one));
        expect(parseMessages(buf)).toHaveLength(count);
        const single = one().length;
        for (let cut = 1; cut < buf.length; cut++) {
          if (cut % single === 0) continue; // whole messages
          expectNlError(() => parseMessages(buf.subarray(0, cut)));
        }
      }),
      { numRuns: 200 },
    );
  });
});
