import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NLMSG_DONE, NetlinkError, parseMessages } from "../../../src/fastdp/netlink.js";
import {
  AF_INET,
  NFLOG_PACKET_TYPE,
  NFULNL_CFG_CMD_BIND,
  NFULNL_CFG_CMD_PF_UNBIND,
  NFULNL_COPY_PACKET,
  buildConfigCommand,
  buildConfigMode,
  buildConfigTimeout,
  parseNflogDatagram,
  parseNflogPacket,
} from "../../../src/policy/nflog.js";
import { ipv4, tcpSeg } from "./frames.js";

/** One attribute, written byte by byte: nla_len, nla_type (host order), value, zero padding. */
function attr(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(4 + value.length, 0);
  head.writeUInt16LE(type, 2);
  const pad = Buffer.alloc((4 - (value.length % 4)) % 4);
  return Buffer.concat([head, value, pad]);
}

const be32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};

/** An nlmsghdr around `body`. */
function message(type: number, body: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt32LE(16 + body.length, 0);
  head.writeUInt16LE(type, 4);
  head.writeUInt16LE(flags, 6);
  return Buffer.concat([head, body]);
}

interface Logged {
  group?: number;
  prefix?: string;
  indev?: number;
  outdev?: number;
  timestamp?: [number, number];
  payload: Buffer;
}

/** An NFULNL_MSG_PACKET as the kernel's __build_packet_message lays it out. */
function logged(p: Logged): Buffer {
  const gen = Buffer.from([AF_INET, 0, 0, 0]);
  gen.writeUInt16BE(p.group ?? 86, 2);
  const parts = [gen, attr(1, Buffer.from([0x08, 0x00, 2, 0]))];
  if (p.indev !== undefined) parts.push(attr(4, be32(p.indev)));
  if (p.outdev !== undefined) parts.push(attr(5, be32(p.outdev)));
  if (p.timestamp !== undefined) {
    const ts = Buffer.alloc(16);
    ts.writeBigUInt64BE(BigInt(p.timestamp[0]), 0);
    ts.writeBigUInt64BE(BigInt(p.timestamp[1]), 8);
    parts.push(attr(3, ts));
  }
  if (p.prefix !== undefined) parts.push(attr(10, Buffer.from(`${p.prefix}\0`)));
  parts.push(attr(9, p.payload));
  return message(NFLOG_PACKET_TYPE, Buffer.concat(parts));
}

const SYN = ipv4({ src: "198.18.1.1", dst: "198.18.1.2", proto: 6, payload: tcpSeg(40000, 80, 2) });
const SAMPLE = logged({
  prefix: "weft",
  indev: 5,
  outdev: 7,
  timestamp: [1_700_000_000, 123_456],
  payload: SYN,
});

describe("nfnetlink_log config messages", () => {
  it("binds a group: NFULNL_MSG_CONFIG with nfgenmsg(AF_UNSPEC, group) and NFULA_CFG_CMD", () => {
    expect(buildConfigCommand(NFULNL_CFG_CMD_BIND, 86).toString("hex")).toBe(
      [
        "1c000000", // nlmsg_len 28
        "0104", // NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG
        "0500", // NLM_F_REQUEST | NLM_F_ACK
        "00000000",
        "00000000",
        "00000056", // AF_UNSPEC, NFNETLINK_V0, res_id 86 (big-endian)
        "05000100", // NFULA_CFG_CMD, 1 byte
        "01000000", // NFULNL_CFG_CMD_BIND, padding
      ].join(""),
    );
  });

  it("unbinds a protocol family: the family in nfgenmsg, group 0", () => {
    const msg = buildConfigCommand(NFULNL_CFG_CMD_PF_UNBIND, 0, AF_INET);
    expect(msg.subarray(16, 20).toString("hex")).toBe("02000000");
    expect(msg[24]).toBe(NFULNL_CFG_CMD_PF_UNBIND);
  });

  it("sets the copy mode: big-endian range, then the mode byte", () => {
    expect(buildConfigMode(86, NFULNL_COPY_PACKET, 128).toString("hex")).toBe(
      [
        "20000000",
        "0104",
        "0500",
        "00000000",
        "00000000",
        "00000056",
        "0a000200", // NFULA_CFG_MODE, 6 bytes
        "00000080", // copy_range 128
        "0200", // NFULNL_COPY_PACKET, _pad
        "0000", // attribute padding
      ].join(""),
    );
  });

  it("sets the flush timeout in hundredths of a second, big-endian", () => {
    const msg = buildConfigTimeout(86, 100);
    expect(msg.subarray(20).toString("hex")).toBe("08000400" + "0000000a");
  });

  it("refuses groups and ranges out of range", () => {
    expect(() => buildConfigCommand(NFULNL_CFG_CMD_BIND, 65536)).toThrow(RangeError);
    expect(() => buildConfigCommand(NFULNL_CFG_CMD_BIND, -1)).toThrow(RangeError);
    expect(() => buildConfigMode(86, NFULNL_COPY_PACKET, 2 ** 32)).toThrow(RangeError);
    expect(() => buildConfigTimeout(86, -10)).toThrow(RangeError);
  });
});

describe("nfnetlink_log packet messages", () => {
  it("reads the header, prefix, devices, timestamp and payload of a hand-built message", () => {
    const { packets, errors } = parseNflogDatagram(SAMPLE);
    expect(errors).toEqual([]);
    expect(packets).toEqual([
      {
        family: AF_INET,
        group: 86,
        hwProtocol: 0x0800,
        hook: 2,
        prefix: "weft",
        indev: 5,
        outdev: 7,
        timestamp: 1_700_000_000_123,
        payload: new Uint8Array(SYN),
      },
    ]);
  });

  it("leaves out what the kernel did not send; the prefix is empty without one", () => {
    const [p] = parseNflogDatagram(logged({ payload: SYN })).packets;
    expect(p).toEqual({
      family: AF_INET,
      group: 86,
      hwProtocol: 0x0800,
      hook: 2,
      prefix: "",
      payload: new Uint8Array(SYN),
    });
  });

  it("copies the payload out of the receive buffer", () => {
    const buf = Buffer.from(SAMPLE);
    const [p] = parseNflogDatagram(buf).packets;
    buf.fill(0);
    expect(Buffer.from(p!.payload)).toEqual(SYN);
  });

  it("reads a batch, skipping its NLMSG_DONE and ACKs", () => {
    const second = logged({ group: 86, prefix: "b", payload: SYN });
    const done = message(NLMSG_DONE, Buffer.alloc(4), 2);
    const ack = message(2, Buffer.concat([Buffer.alloc(4), Buffer.alloc(16)]));
    const { packets, errors } = parseNflogDatagram(Buffer.concat([ack, SAMPLE, second, done]));
    expect(errors).toEqual([]);
    expect(packets.map((p) => p.prefix)).toEqual(["weft", "b"]);
  });

  it("says what is wrong with a message that is not a packet", () => {
    const [msg] = parseMessages(SAMPLE);
    const wrongType = { ...msg!, type: 0x0401 };
    expect(() => parseNflogPacket(wrongType)).toThrow(/not NFLOG/);
    const cases: [Buffer, RegExp][] = [
      [message(NFLOG_PACKET_TYPE, Buffer.alloc(2)), /nfgenmsg truncated/],
      [message(NFLOG_PACKET_TYPE, Buffer.concat([Buffer.alloc(4), attr(9, SYN)])), /PACKET_HDR/],
      [
        message(
          NFLOG_PACKET_TYPE,
          Buffer.concat([Buffer.alloc(4), attr(1, Buffer.from([8, 0, 2, 0]))]),
        ),
        /NFULA_PAYLOAD missing/,
      ],
      [
        message(
          NFLOG_PACKET_TYPE,
          Buffer.concat([
            Buffer.alloc(4),
            attr(1, Buffer.from([8, 0, 2, 0])),
            attr(4, Buffer.alloc(2)),
            attr(9, SYN),
          ]),
        ),
        /NFULA_IFINDEX_INDEV: expected 4 bytes/,
      ],
      [
        message(
          NFLOG_PACKET_TYPE,
          Buffer.concat([
            Buffer.alloc(4),
            attr(1, Buffer.from([8, 0, 2, 0])),
            attr(3, Buffer.alloc(8)),
            attr(9, SYN),
          ]),
        ),
        /NFULA_TIMESTAMP of 8 bytes/,
      ],
    ];
    for (const [bytes, want] of cases) {
      const { packets, errors } = parseNflogDatagram(bytes);
      expect(packets).toEqual([]);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(NetlinkError);
      expect(errors[0]!.message).toMatch(want);
    }
  });

  it("reports broken framing as one error", () => {
    const bad = Buffer.from(SAMPLE);
    bad.writeUInt32LE(bad.length + 4, 0);
    const { packets, errors } = parseNflogDatagram(bad);
    expect(packets).toEqual([]);
    expect(errors.map((e) => e.code)).toEqual(["truncated"]);
  });
});

/** parseNflogDatagram on hostile input: never throws, and every error is a NetlinkError. */
function survives(bytes: Buffer): { packets: number; errors: number } {
  const { packets, errors } = parseNflogDatagram(bytes);
  for (const e of errors) expect(e).toBeInstanceOf(NetlinkError);
  for (const p of packets) expect(p.payload).toBeInstanceOf(Uint8Array);
  return { packets: packets.length, errors: errors.length };
}

describe("nfnetlink_log parsing, fuzzed", () => {
  const batch = Buffer.concat([SAMPLE, logged({ payload: SYN, prefix: "second" })]);

  it("survives every truncation of a batch; a cut message is an error, never a packet", () => {
    for (let n = 0; n <= batch.length; n++) {
      const r = survives(batch.subarray(0, n));
      if (n === 0) expect(r).toEqual({ packets: 0, errors: 0 });
      else if (n === SAMPLE.length || n === batch.length) expect(r.errors).toBe(0);
      else expect(r.errors).toBe(1);
    }
  });

  it("survives random byte mutations", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: batch.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        (edits) => {
          const bytes = Buffer.from(batch);
          for (const [at, value] of edits) bytes[at] = value;
          survives(bytes);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("survives corrupted message and attribute lengths", () => {
    // Offsets of every length field in SAMPLE: nlmsg_len, then each nla_len.
    const lengths: { at: number; size: 2 | 4 }[] = [{ at: 0, size: 4 }];
    for (let at = 20; at + 4 <= SAMPLE.length;) {
      lengths.push({ at, size: 2 });
      at += Math.ceil(SAMPLE.readUInt16LE(at) / 4) * 4;
    }
    fc.assert(
      fc.property(
        fc.constantFrom(...lengths),
        fc.integer({ min: 0, max: 0xffffffff }),
        ({ at, size }, value) => {
          const bytes = Buffer.from(SAMPLE);
          if (size === 4) bytes.writeUInt32LE(value, at);
          else bytes.writeUInt16LE(value & 0xffff, at);
          survives(bytes);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("survives random bytes, with and without a valid NFLOG header in front", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (body, framed) => {
        const bytes = framed ? message(NFLOG_PACKET_TYPE, Buffer.from(body)) : Buffer.from(body);
        survives(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it("reads back whatever a well-formed message carries", () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            group: fc.integer({ min: 0, max: 0xffff }),
            prefix: fc.stringMatching(/^[\x20-\x7e]{0,40}$/),
            indev: fc.nat(),
            outdev: fc.nat(),
            timestamp: fc.tuple(fc.nat({ max: 2 ** 40 }), fc.nat({ max: 999_999 })),
            payload: fc.uint8Array({ maxLength: 128 }).map((b) => Buffer.from(b)),
          },
          { requiredKeys: ["payload"] },
        ),
        (p) => {
          const { packets, errors } = parseNflogDatagram(logged(p));
          expect(errors).toEqual([]);
          const [got] = packets;
          expect(got!.group).toBe(p.group ?? 86);
          expect(got!.prefix).toBe(p.prefix ?? "");
          expect(got!.indev).toBe(p.indev);
          expect(got!.outdev).toBe(p.outdev);
          expect(got!.timestamp).toBe(
            p.timestamp && p.timestamp[0] * 1000 + Math.floor(p.timestamp[1] / 1000),
          );
          expect(Buffer.from(got!.payload)).toEqual(p.payload);
        },
      ),
    );
  });
});
