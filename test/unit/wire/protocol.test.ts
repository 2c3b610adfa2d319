import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_TCP_MSG_SIZE,
  MessageFramer,
  PROTOCOL_HEADER_LEN,
  ProtocolTag,
  emitProtocolHeader,
  frameMessage,
  negotiateVersion,
  parseProtocolHeader,
} from "../../../src/wire/protocol.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ""), "hex");

const V1 = hex("77 65 61 76 65 01 02");
const V4 = hex(`0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00 1b ff 82 00 01 04 4e 61 6d 65 11
  61 61 3a 62 62 3a 63 63 3a 64 64 3a 65 65 3a 30 31`);
/** V5, unencrypted: header, flag 00, then [len][V4] and [len][heartbeat]. */
const V5_PLAIN = Buffer.concat([
  hex("77 65 61 76 65 01 02 00 00 00 00 2b"),
  V4,
  hex("00 00 00 01 00"),
]);

describe("protocol header (V1)", () => {
  it("emits weave + min + max", () => {
    expect(emitProtocolHeader(1, 2).toString("hex")).toBe(V1.toString("hex"));
    expect(emitProtocolHeader().toString("hex")).toBe("77656176650202");
    expect(PROTOCOL_HEADER_LEN).toBe(7);
  });

  it("parses a peer's header", () => {
    expect(parseProtocolHeader(V1)).toEqual({ min: 1, max: 2 });
  });

  it("refuses bad magic", () => {
    const bad = Buffer.from(V1);
    bad[0] = 0x57; // "Weave"
    expect(parseProtocolHeader(bad)).toEqual({ error: expect.stringMatching(/bad magic/) });
    expect(parseProtocolHeader(Buffer.from("GET / H"))).toHaveProperty("error");
  });

  it("refuses a header of the wrong length", () => {
    expect(parseProtocolHeader(V1.subarray(0, 6))).toEqual({
      error: expect.stringMatching(/7 bytes, got 6/),
    });
    expect(parseProtocolHeader(Buffer.concat([V1, Buffer.from([0])]))).toEqual({
      error: expect.stringMatching(/7 bytes, got 8/),
    });
    expect(parseProtocolHeader(new Uint8Array(0))).toHaveProperty("error");
  });
});

describe("negotiateVersion", () => {
  it("takes the highest version in both ranges", () => {
    expect(negotiateVersion({ min: 2, max: 2 }, { min: 1, max: 2 })).toBe(2);
    expect(negotiateVersion({ min: 1, max: 2 }, { min: 1, max: 2 })).toBe(2);
    expect(negotiateVersion({ min: 1, max: 3 }, { min: 2, max: 5 })).toBe(3);
    expect(negotiateVersion({ min: 1, max: 2 }, { min: 1, max: 1 })).toBe(1);
  });

  it("fails with no common version", () => {
    const result = negotiateVersion({ min: 2, max: 2 }, { min: 1, max: 1 });
    expect(result).toEqual({ error: expect.stringMatching(/no common protocol version/) });
    expect(negotiateVersion({ min: 2, max: 2 }, { min: 3, max: 4 })).toHaveProperty("error");
    // an inverted range from the peer has nothing in common with anything
    expect(negotiateVersion({ min: 1, max: 2 }, { min: 2, max: 1 })).toHaveProperty("error");
  });
});

/** Splits `bytes` at the given cut points (sorted, deduplicated, within range). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    out.push(Buffer.from(bytes.subarray(prev, p))); // own copy, empty chunks included
    prev = p;
  }
  return out;
}

describe("MessageFramer", () => {
  it("reads the unencrypted V5 stream: header, flag, V4 message, heartbeat", () => {
    const framer = new MessageFramer();
    framer.push(V5_PLAIN);
    expect(framer.takeRaw(7)?.toString("hex")).toBe(V1.toString("hex"));
    expect(framer.takeRaw(1)?.toString("hex")).toBe("00");
    const features = framer.next();
    expect(features?.length).toBe(0x2b);
    expect(features?.toString("hex")).toBe(V4.toString("hex"));
    const hb = framer.next();
    expect(hb?.toString("hex")).toBe("00");
    expect(hb?.[0]).toBe(ProtocolTag.Heartbeat);
    expect(framer.next()).toBeUndefined();
    expect(framer.pending).toBe(0);
  });

  it("reads V5 the same whatever the chunking", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 20 }), (cuts) => {
        const framer = new MessageFramer();
        const got: string[] = [];
        let stage = 0;
        const pull = (): void => {
          for (;;) {
            if (stage === 0) {
              const h = framer.takeRaw(7);
              if (h === undefined) return;
              got.push(h.toString("hex"));
              stage = 1;
            } else if (stage === 1) {
              const f = framer.takeRaw(1);
              if (f === undefined) return;
              got.push(f.toString("hex"));
              stage = 2;
            } else {
              const m = framer.next();
              if (m === undefined) return;
              got.push(m.toString("hex"));
            }
          }
        };
        for (const chunk of split(V5_PLAIN, cuts)) {
          framer.push(chunk);
          pull();
        }
        expect(got).toEqual([V1.toString("hex"), "00", V4.toString("hex"), "00"]);
        expect(framer.pending).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it("returns random messages intact whatever the chunking", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (messages, cuts) => {
          const stream = Buffer.concat(messages.map((m) => frameMessage(m)));
          const framer = new MessageFramer();
          const got: string[] = [];
          for (const chunk of split(stream, cuts)) {
            framer.push(chunk);
            for (let m = framer.next(); m !== undefined; m = framer.next()) {
              got.push(m.toString("hex"));
            }
          }
          expect(got).toEqual(messages.map((m) => Buffer.from(m).toString("hex")));
          expect(framer.pending).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("waits for the length prefix and the body", () => {
    const framer = new MessageFramer();
    framer.push(hex("00 00 00"));
    expect(framer.next()).toBeUndefined();
    framer.push(hex("02 aa"));
    expect(framer.next()).toBeUndefined();
    expect(framer.pending).toBe(5);
    framer.push(hex("bb 00 00 00 00"));
    expect(framer.next()?.toString("hex")).toBe("aabb");
    expect(framer.next()?.length).toBe(0); // a zero-length message is still a message here
    expect(framer.next()).toBeUndefined();
  });

  it("rejects an over-limit length as soon as the prefix is in, before any body", () => {
    const framer = new MessageFramer(100);
    framer.push(hex("00 00 00 64"));
    expect(framer.next()).toBeUndefined(); // 100 is allowed: waits for the body
    const over = new MessageFramer(100);
    over.push(hex("00 00 00 65"));
    expect(() => over.next()).toThrow(/101 bytes exceeds the 100-byte limit/);
    const big = new MessageFramer();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(MAX_TCP_MSG_SIZE + 1);
    big.push(prefix);
    expect(() => big.next()).toThrow(/exceeds/);
    expect(big.pending).toBe(4);
    const max = new MessageFramer();
    prefix.writeUInt32BE(MAX_TCP_MSG_SIZE);
    max.push(prefix);
    expect(max.next()).toBeUndefined();
    const huge = new MessageFramer();
    huge.push(hex("ff ff ff ff"));
    expect(() => huge.next()).toThrow(/exceeds/);
  });

  it("takeRaw waits for enough bytes", () => {
    const framer = new MessageFramer();
    framer.push(hex("77 65"));
    expect(framer.takeRaw(7)).toBeUndefined();
    framer.push(hex("61 76 65 02 02 01"));
    expect(framer.takeRaw(7)?.toString("hex")).toBe("77656176650202");
    expect(framer.takeRaw(1)?.toString("hex")).toBe("01");
    expect(framer.pending).toBe(0);
  });
});

describe("frameMessage", () => {
  it("prefixes the big-endian length", () => {
    expect(frameMessage(Uint8Array.from([1, 2, 3])).toString("hex")).toBe("00000003010203");
    expect(frameMessage(new Uint8Array(0)).toString("hex")).toBe("00000000");
    expect(frameMessage(V4).toString("hex")).toBe(
      Buffer.concat([hex("00 00 00 2b"), V4]).toString("hex"),
    );
    expect(frameMessage(new Uint8Array(0x1234)).subarray(0, 4).toString("hex")).toBe("00001234");
  });

  it("refuses bodies over 10 MiB", () => {
    expect(() => frameMessage(new Uint8Array(MAX_TCP_MSG_SIZE + 1))).toThrow(RangeError);
  });

  it("has Weave's tag numbers", () => {
    expect(ProtocolTag).toEqual({
      Heartbeat: 0,
      ConnectionEstablished: 1,
      FragmentationReceived: 2,
      PMTUVerified: 3,
      Gossip: 4,
      GossipUnicast: 5,
      GossipBroadcast: 6,
      OverlayControlMsg: 7,
    });
  });
});

describe("MessageFramer edge cases", () => {
  it("takeRaw(0) on an empty framer yields an empty buffer", () => {
    const framer = new MessageFramer();
    expect(framer.takeRaw(0)?.length).toBe(0);
    expect(framer.next()).toBeUndefined();
  });
});
