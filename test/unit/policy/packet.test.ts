import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  IPPROTO_ICMP,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  PARSE_MALFORMED,
  PARSE_NOT_IPV4,
  PARSE_OK,
  ParsedPacket,
  TCP_ACK,
  TCP_SYN,
  icmpRequestType,
  isIcmpErrorType,
  parseFrame,
} from "../../../src/policy/packet.js";

// Frames are built here byte by byte, independently of the parser.

const addr = (dotted: string): number =>
  dotted.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);

function checksum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += bytes.readUInt16BE(i);
  if (bytes.length % 2 === 1) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

interface Ip {
  src: string;
  dst: string;
  proto: number;
  payload: Buffer;
  id?: number;
  /** In 8-byte units. */
  fragOffset?: number;
  mf?: boolean;
  /** Extra header words (IP options, as NOPs). */
  optionWords?: number;
  /** Overrides the total length field. */
  totalLength?: number;
}

function ipv4(p: Ip): Buffer {
  const hlen = 20 + 4 * (p.optionWords ?? 0);
  const h = Buffer.alloc(hlen, 1); // option bytes are NOPs (1)
  h[0] = 0x40 | (hlen / 4);
  h[1] = 0;
  h.writeUInt16BE(p.totalLength ?? hlen + p.payload.length, 2);
  h.writeUInt16BE(p.id ?? 0x1234, 4);
  h.writeUInt16BE(((p.mf ?? false) ? 0x2000 : 0) | (p.fragOffset ?? 0), 6);
  h[8] = 64;
  h[9] = p.proto;
  h.writeUInt16BE(0, 10);
  h.writeUInt32BE(addr(p.src), 12);
  h.writeUInt32BE(addr(p.dst), 16);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, p.payload]);
}

function tcp(sport: number, dport: number, flags: number, data = 0): Buffer {
  const b = Buffer.alloc(20 + data);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt32BE(1000, 4);
  b[12] = 5 << 4;
  b[13] = flags;
  b.writeUInt16BE(65535, 14);
  return b;
}

function udp(sport: number, dport: number, data = 0): Buffer {
  const b = Buffer.alloc(8 + data);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(8 + data, 4);
  return b;
}

function icmp(type: number, code: number, id: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.concat([Buffer.alloc(8), body]);
  b[0] = type;
  b[1] = code;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(7, 6);
  b.writeUInt16BE(checksum(b), 2);
  return b;
}

function eth(payload: Buffer, opts: { vlan?: number; etherType?: number } = {}): Buffer {
  const head = Buffer.alloc(12);
  head.writeUIntBE(0x020000000002, 0, 6);
  head.writeUIntBE(0x020000000001, 6, 6);
  const tag = Buffer.alloc(opts.vlan === undefined ? 0 : 4);
  if (opts.vlan !== undefined) {
    tag.writeUInt16BE(0x8100, 0);
    tag.writeUInt16BE(opts.vlan, 2);
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(opts.etherType ?? 0x0800);
  return Buffer.concat([head, tag, et, payload]);
}

const parse = (frame: Buffer, offset = 0, length = frame.length - offset): ParsedPacket => {
  const out = new ParsedPacket();
  parseFrame(frame, offset, length, out);
  return out;
};

const SYN_FRAME = eth(
  ipv4({ src: "10.32.0.1", dst: "192.168.7.9", proto: IPPROTO_TCP, payload: tcp(40000, 80, 2) }),
);

describe("parseFrame: well-formed frames", () => {
  it("reads a TCP SYN: addresses as uint32, ports, flags", () => {
    const p = parse(SYN_FRAME);
    expect(p.status).toBe(PARSE_OK);
    expect(p.vlan).toBe(-1);
    expect(p.etherType).toBe(0x0800);
    expect(p.l3Offset).toBe(14);
    expect(p.headerLength).toBe(20);
    expect(p.totalLength).toBe(40);
    expect(p.protocol).toBe(IPPROTO_TCP);
    expect(p.src).toBe(0x0a200001);
    expect(p.dst).toBe(0xc0a80709); // above 2^31, still positive
    expect(p.ipId).toBe(0x1234);
    expect(p.l4Offset).toBe(34);
    expect(p.hasPorts).toBe(true);
    expect(p.srcPort).toBe(40000);
    expect(p.dstPort).toBe(80);
    expect(p.tcpFlags).toBe(TCP_SYN);
    expect(p.isFragment).toBe(false);
    expect(p.isIcmpError).toBe(false);
    expect(p.icmpType).toBe(-1);
  });

  it("reads UDP and SCTP ports", () => {
    const u = parse(
      eth(ipv4({ src: "1.2.3.4", dst: "5.6.7.8", proto: IPPROTO_UDP, payload: udp(53, 9999, 30) })),
    );
    expect([u.status, u.protocol, u.srcPort, u.dstPort, u.tcpFlags]).toEqual([
      PARSE_OK,
      17,
      53,
      9999,
      -1,
    ]);
    const sctpHeader = Buffer.alloc(12);
    sctpHeader.writeUInt16BE(3868, 0);
    sctpHeader.writeUInt16BE(3869, 2);
    const s = parse(
      eth(ipv4({ src: "1.2.3.4", dst: "5.6.7.8", proto: IPPROTO_SCTP, payload: sctpHeader })),
    );
    expect([s.status, s.protocol, s.hasPorts, s.srcPort, s.dstPort]).toEqual([
      PARSE_OK,
      132,
      true,
      3868,
      3869,
    ]);
  });

  it("reads other protocols without ports", () => {
    const gre = parse(
      eth(ipv4({ src: "1.2.3.4", dst: "5.6.7.8", proto: 47, payload: Buffer.alloc(4) })),
    );
    expect([gre.status, gre.protocol, gre.hasPorts, gre.srcPort]).toEqual([
      PARSE_OK,
      47,
      false,
      -1,
    ]);
  });

  it("skips IP options", () => {
    const p = parse(
      eth(
        ipv4({
          src: "1.2.3.4",
          dst: "5.6.7.8",
          proto: IPPROTO_TCP,
          optionWords: 3,
          payload: tcp(1, 2, TCP_ACK),
        }),
      ),
    );
    expect([p.status, p.headerLength, p.l4Offset, p.srcPort, p.dstPort, p.tcpFlags]).toEqual([
      PARSE_OK,
      32,
      46,
      1,
      2,
      TCP_ACK,
    ]);
  });

  it("ignores Ethernet padding after the datagram", () => {
    const padded = Buffer.concat([SYN_FRAME, Buffer.alloc(20, 0xee)]);
    const p = parse(padded);
    expect(p.status).toBe(PARSE_OK);
    expect(p.totalLength).toBe(40);
    expect(p.srcPort).toBe(40000);
  });

  it("skips one 802.1Q tag and reports its VLAN id", () => {
    const p = parse(eth(SYN_FRAME.subarray(14), { vlan: 0x2abc }));
    expect(p.status).toBe(PARSE_OK);
    expect(p.vlan).toBe(0xabc); // priority bits dropped
    expect(p.l3Offset).toBe(18);
    expect([p.src, p.dst, p.srcPort, p.dstPort]).toEqual([0x0a200001, 0xc0a80709, 40000, 80]);
  });

  it("says not-IPv4 for ARP, IPv6 and a second VLAN tag", () => {
    expect(
      parseFrame(eth(Buffer.alloc(28), { etherType: 0x0806 }), 0, 42, new ParsedPacket()),
    ).toBe(PARSE_NOT_IPV4);
    const v6 = eth(Buffer.alloc(40), { etherType: 0x86dd });
    expect(parse(v6).status).toBe(PARSE_NOT_IPV4);
    const innerTag = Buffer.from([0x00, 0x05, 0x08, 0x00]); // VLAN 5, then IPv4
    const qinq = eth(Buffer.concat([innerTag, SYN_FRAME.subarray(14)]), {
      vlan: 7,
      etherType: 0x8100,
    });
    const q = parse(qinq);
    expect(q.status).toBe(PARSE_NOT_IPV4);
    expect(q.etherType).toBe(0x8100);
  });

  it("reads ICMP echo type, code and identifier", () => {
    const p = parse(
      eth(
        ipv4({ src: "1.2.3.4", dst: "5.6.7.8", proto: IPPROTO_ICMP, payload: icmp(8, 0, 0xbeef) }),
      ),
    );
    expect([p.status, p.icmpType, p.icmpCode, p.icmpId, p.isIcmpError, p.hasPorts]).toEqual([
      PARSE_OK,
      8,
      0,
      0xbeef,
      false,
      false,
    ]);
    const r = parse(
      eth(
        ipv4({ src: "5.6.7.8", dst: "1.2.3.4", proto: IPPROTO_ICMP, payload: icmp(0, 0, 0xbeef) }),
      ),
    );
    expect([r.icmpType, r.icmpId]).toEqual([0, 0xbeef]);
    // Not a query: no identifier.
    const ra = parse(
      eth(ipv4({ src: "5.6.7.8", dst: "1.2.3.4", proto: IPPROTO_ICMP, payload: icmp(9, 0, 0x1) })),
    );
    expect([ra.status, ra.icmpType, ra.icmpId, ra.isIcmpError]).toEqual([PARSE_OK, 9, -1, false]);
  });

  it("reads the embedded header of an ICMP error about a TCP segment", () => {
    const original = ipv4({
      src: "10.32.0.1",
      dst: "192.168.7.9",
      proto: IPPROTO_TCP,
      payload: tcp(40000, 80, TCP_SYN),
    });
    // Errors quote the header and the first 8 bytes of the datagram.
    const quoted = original.subarray(0, 28);
    for (const type of [3, 11, 12]) {
      const p = parse(
        eth(
          ipv4({
            src: "10.32.0.254",
            dst: "10.32.0.1",
            proto: IPPROTO_ICMP,
            payload: icmp(type, 1, 0, quoted),
          }),
        ),
      );
      expect(p.status).toBe(PARSE_OK);
      expect(p.isIcmpError).toBe(true);
      expect(p.icmpType).toBe(type);
      expect(p.icmpId).toBe(-1);
      expect([p.innerProtocol, p.innerSrc, p.innerDst]).toEqual([6, 0x0a200001, 0xc0a80709]);
      expect([p.innerHasPorts, p.innerSrcPort, p.innerDstPort]).toEqual([true, 40000, 80]);
    }
  });

  it("reads the embedded header of an ICMP error about an echo request", () => {
    const original = ipv4({
      src: "1.2.3.4",
      dst: "5.6.7.8",
      proto: IPPROTO_ICMP,
      payload: icmp(8, 0, 0x4242),
    });
    const p = parse(
      eth(ipv4({ src: "9.9.9.9", dst: "1.2.3.4", proto: 1, payload: icmp(11, 0, 0, original) })),
    );
    expect(p.status).toBe(PARSE_OK);
    expect([p.innerProtocol, p.innerIcmpType, p.innerIcmpId, p.innerHasPorts]).toEqual([
      1,
      8,
      0x4242,
      false,
    ]);
  });

  it("reads fragments: ports in the first only", () => {
    const whole = udp(5000, 6000, 100); // 108 bytes of UDP
    const first = parse(
      eth(
        ipv4({
          src: "1.2.3.4",
          dst: "5.6.7.8",
          proto: IPPROTO_UDP,
          id: 77,
          mf: true,
          payload: whole.subarray(0, 48),
        }),
      ),
    );
    expect(first.status).toBe(PARSE_OK);
    expect([first.isFragment, first.isNonFirstFragment, first.moreFragments]).toEqual([
      true,
      false,
      true,
    ]);
    expect([first.hasPorts, first.srcPort, first.dstPort, first.ipId]).toEqual([
      true,
      5000,
      6000,
      77,
    ]);
    const later = parse(
      eth(
        ipv4({
          src: "1.2.3.4",
          dst: "5.6.7.8",
          proto: IPPROTO_UDP,
          id: 77,
          fragOffset: 6,
          payload: whole.subarray(48),
        }),
      ),
    );
    expect(later.status).toBe(PARSE_OK);
    expect([later.isFragment, later.isNonFirstFragment, later.moreFragments]).toEqual([
      true,
      true,
      false,
    ]);
    expect([later.fragmentOffset, later.hasPorts, later.srcPort, later.l4Offset]).toEqual([
      6,
      false,
      -1,
      -1,
    ]);
    // A later fragment's bytes are data, never ports or flags, whatever they look like.
    const tcpLater = parse(
      eth(
        ipv4({
          src: "1.2.3.4",
          dst: "5.6.7.8",
          proto: IPPROTO_TCP,
          fragOffset: 100,
          payload: tcp(1, 2, TCP_SYN),
        }),
      ),
    );
    expect([tcpLater.status, tcpLater.hasPorts, tcpLater.tcpFlags]).toEqual([PARSE_OK, false, -1]);
  });

  it("reads a frame in the middle of a larger buffer", () => {
    const buf = Buffer.concat([Buffer.alloc(7, 0x45), SYN_FRAME, Buffer.alloc(9, 0xff)]);
    const p = parse(buf, 7, SYN_FRAME.length);
    expect(p.status).toBe(PARSE_OK);
    expect([p.l3Offset, p.l4Offset, p.srcPort, p.dstPort]).toEqual([21, 41, 40000, 80]);
  });

  it("resets fields between frames, so a reused ParsedPacket never leaks old values", () => {
    const out = new ParsedPacket();
    parseFrame(SYN_FRAME, 0, SYN_FRAME.length, out);
    const frag = eth(
      ipv4({ src: "1.1.1.1", dst: "2.2.2.2", proto: 6, fragOffset: 9, payload: Buffer.alloc(8) }),
    );
    parseFrame(frag, 0, frag.length, out);
    expect([out.hasPorts, out.srcPort, out.dstPort, out.tcpFlags]).toEqual([false, -1, -1, -1]);
    parseFrame(Buffer.alloc(3), 0, 3, out);
    expect([out.status, out.protocol, out.src]).toEqual([PARSE_MALFORMED, -1, 0]);
  });

  it("classifies ICMP types", () => {
    expect([0, 8, 13, 14, 15, 16, 17, 18].map(icmpRequestType)).toEqual([
      8, 8, 13, 13, 15, 15, 17, 17,
    ]);
    expect([3, 4, 5, 9, 11, 12].map(icmpRequestType)).toEqual([-1, -1, -1, -1, -1, -1]);
    expect([3, 11, 12].every(isIcmpErrorType)).toBe(true);
    expect([0, 4, 5, 8].some(isIcmpErrorType)).toBe(false);
  });
});

describe("parseFrame: malformed frames", () => {
  const malformed = (frame: Buffer): void => {
    expect(parse(frame).status).toBe(PARSE_MALFORMED);
  };

  it("rejects frames shorter than an Ethernet header or a VLAN tag", () => {
    malformed(Buffer.alloc(0));
    malformed(Buffer.alloc(13));
    malformed(eth(Buffer.alloc(0), { vlan: 1 }).subarray(0, 16));
  });

  it("rejects bad IPv4 headers", () => {
    const ip = SYN_FRAME.subarray(14);
    const withByte = (at: number, value: number): Buffer => {
      const b = Buffer.from(ip);
      b[at] = value;
      return eth(b);
    };
    malformed(eth(ip.subarray(0, 19))); // shorter than a header
    malformed(withByte(0, 0x65)); // version 6
    malformed(withByte(0, 0x44)); // IHL 4
    malformed(withByte(0, 0x4f)); // IHL 15: 60 bytes, more than the datagram
    malformed(
      eth(
        ipv4({ src: "1.1.1.1", dst: "2.2.2.2", proto: 6, payload: tcp(1, 2, 2), totalLength: 41 }),
      ),
    );
    malformed(
      eth(
        ipv4({ src: "1.1.1.1", dst: "2.2.2.2", proto: 6, payload: tcp(1, 2, 2), totalLength: 19 }),
      ),
    );
  });

  it("rejects truncated or impossible transport headers", () => {
    const ip = (proto: number, payload: Buffer): Buffer =>
      eth(ipv4({ src: "1.1.1.1", dst: "2.2.2.2", proto, payload }));
    malformed(ip(6, tcp(1, 2, 2).subarray(0, 19)));
    const shortOffset = tcp(1, 2, 2);
    shortOffset[12] = 4 << 4;
    malformed(ip(6, shortOffset));
    const longOffset = tcp(1, 2, 2);
    longOffset[12] = 6 << 4;
    malformed(ip(6, longOffset));
    malformed(ip(17, udp(1, 2).subarray(0, 7)));
    const longUdp = udp(1, 2, 4);
    longUdp.writeUInt16BE(13, 4);
    malformed(ip(17, longUdp));
    const shortUdp = udp(1, 2, 4);
    shortUdp.writeUInt16BE(7, 4);
    malformed(ip(17, shortUdp));
    malformed(ip(132, Buffer.alloc(11)));
    malformed(ip(1, icmp(8, 0, 1).subarray(0, 7)));
  });

  it("rejects ICMP errors without a readable embedded header", () => {
    const err = (body: Buffer): Buffer =>
      eth(ipv4({ src: "9.9.9.9", dst: "1.1.1.1", proto: 1, payload: icmp(3, 3, 0, body) }));
    const original = ipv4({ src: "1.1.1.1", dst: "2.2.2.2", proto: 17, payload: udp(1, 2) });
    expect(parse(err(original.subarray(0, 28))).status).toBe(PARSE_OK);
    malformed(err(original.subarray(0, 19))); // no whole header
    malformed(err(original.subarray(0, 23))); // no ports
    const v6 = Buffer.from(original);
    v6[0] = 0x60;
    malformed(err(v6));
  });

  it("rejects offsets and lengths that do not fit the buffer", () => {
    const out = new ParsedPacket();
    expect(parseFrame(SYN_FRAME, 0, SYN_FRAME.length + 1, out)).toBe(PARSE_MALFORMED);
    expect(parseFrame(SYN_FRAME, 1, SYN_FRAME.length, out)).toBe(PARSE_MALFORMED);
    expect(parseFrame(SYN_FRAME, -1, 10, out)).toBe(PARSE_MALFORMED);
    expect(parseFrame(SYN_FRAME, 0, -5, out)).toBe(PARSE_MALFORMED);
    expect(parseFrame(SYN_FRAME, 0.5, 20, out)).toBe(PARSE_MALFORMED);
    expect(parseFrame(SYN_FRAME, 0, Number.NaN, out)).toBe(PARSE_MALFORMED);
  });
});

/** A generator of well-formed frames of every kind the parser reads. */
const validFrame: fc.Arbitrary<Buffer> = fc
  .record({
    src: fc.ipV4(),
    dst: fc.ipV4(),
    kind: fc.constantFrom("tcp", "udp", "sctp", "icmp", "icmp-error", "other"),
    sport: fc.integer({ min: 0, max: 65535 }),
    dport: fc.integer({ min: 0, max: 65535 }),
    flags: fc.integer({ min: 0, max: 255 }),
    data: fc.integer({ min: 0, max: 40 }),
    optionWords: fc.integer({ min: 0, max: 10 }),
    vlan: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
  })
  .map((r) => {
    let proto: number;
    let payload: Buffer;
    switch (r.kind) {
      case "tcp":
        [proto, payload] = [6, tcp(r.sport, r.dport, r.flags, r.data)];
        break;
      case "udp":
        [proto, payload] = [17, udp(r.sport, r.dport, r.data)];
        break;
      case "sctp":
        [proto, payload] = [132, Buffer.alloc(12 + r.data, r.sport & 0xff)];
        break;
      case "icmp":
        // Queries, replies and other non-error types (errors are the next kind).
        [proto, payload] = [
          1,
          icmp(
            [0, 8, 9, 10, 13, 14, 15, 16, 17, 18][r.flags % 10]!,
            0,
            r.sport,
            Buffer.alloc(r.data),
          ),
        ];
        break;
      case "icmp-error": {
        const original = ipv4({ src: r.dst, dst: r.src, proto: 17, payload: udp(r.dport, 53) });
        [proto, payload] = [1, icmp(3, r.flags % 16, 0, original)];
        break;
      }
      default:
        [proto, payload] = [r.flags, Buffer.alloc(r.data)];
        if (proto === 6 || proto === 17 || proto === 132 || proto === 1) proto = 47;
    }
    return eth(
      ipv4({ src: r.src, dst: r.dst, proto, payload, optionWords: r.optionWords }),
      r.vlan === undefined ? {} : { vlan: r.vlan },
    );
  });

const snapshot = (p: ParsedPacket): Record<string, unknown> => ({ ...p });

describe("parseFrame: properties", () => {
  it("parses every generated well-formed frame", () => {
    fc.assert(
      fc.property(validFrame, (frame) => {
        expect(parse(frame).status).toBe(PARSE_OK);
      }),
    );
  });

  it("never throws on random bytes, and answers one of the three statuses", () => {
    const out = new ParsedPacket();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
        const status = parseFrame(bytes, 0, bytes.length, out);
        expect([PARSE_OK, PARSE_NOT_IPV4, PARSE_MALFORMED]).toContain(status);
        expect(out.status).toBe(status);
      }),
      { numRuns: 2000 },
    );
  });

  it("never throws on random bytes behind a plausible Ethernet and IPv4 start", () => {
    const out = new ParsedPacket();
    fc.assert(
      fc.property(
        fc.constantFrom(6, 17, 132, 1, 47),
        fc.integer({ min: 0x45, max: 0x4f }),
        fc.uint8Array({ maxLength: 100 }),
        (proto, versionIhl, rest) => {
          const head = Buffer.from(SYN_FRAME.subarray(0, 34));
          head[14] = versionIhl;
          head[23] = proto;
          head.writeUInt16BE(20 + rest.length, 16);
          const frame = Buffer.concat([head, rest]);
          expect(() => parseFrame(frame, 0, frame.length, out)).not.toThrow();
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("calls every truncation of a well-formed frame malformed", () => {
    fc.assert(
      fc.property(validFrame, fc.nat(), (frame, cut) => {
        const len = cut % frame.length;
        expect(parse(frame.subarray(0, len)).status).toBe(PARSE_MALFORMED);
      }),
      { numRuns: 1000 },
    );
  });

  it("reads only its own bytes: a frame inside random surroundings parses as alone", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          validFrame,
          fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
        ),
        fc.uint8Array({ maxLength: 30 }),
        fc.uint8Array({ maxLength: 30 }),
        fc.nat(),
        (frame, before, after, cut) => {
          const len = frame.length === 0 ? 0 : cut % (frame.length + 1);
          const alone = parse(Buffer.from(frame.subarray(0, len)));
          const inside = parse(Buffer.concat([before, frame, after]), before.length, len);
          const shift = (p: ParsedPacket): Record<string, unknown> => {
            const s = snapshot(p);
            for (const k of ["l3Offset", "l4Offset"] as const) {
              if (p[k] >= 0) s[k] = p[k] - (p === inside ? before.length : 0);
            }
            return s;
          };
          expect(shift(inside)).toEqual(shift(alone));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("never throws on random mutations of well-formed frames", () => {
    const out = new ParsedPacket();
    fc.assert(
      fc.property(
        validFrame,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        (frame, edits) => {
          for (const [at, value] of edits) frame[at % frame.length] = value;
          expect(() => parseFrame(frame, 0, frame.length, out)).not.toThrow();
        },
      ),
      { numRuns: 2000 },
    );
  });
});
