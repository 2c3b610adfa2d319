import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  GossipEnvelopeError,
  MAX_GOSSIP_PAYLOAD_BYTES,
  decodeBroadcast,
  decodeGossip,
  decodeUnicast,
  encodeBroadcast,
  encodeGossip,
  encodeUnicast,
} from "../../../src/wire/gossip-envelope.js";
import {
  type GobInput,
  type GobType,
  encodeStream,
  gobBytes,
  gobInt,
  gobMap,
  gobSlice,
  gobString,
  gobUint,
} from "../../../src/wire/gob.js";
import { parsePeerName } from "../../../src/wire/peer-name.js";
import { concat, hex, toHex } from "../vectors.js";

const A = parsePeerName("aa:bb:cc:dd:ee:01");
const B = parsePeerName("aa:bb:cc:dd:ee:02");

// Vector V6 (spec 2.4 and section 10).
const V6_GOSSIP = `0b 0c 00 08 74 6f 70 6f 6c 6f 67 79 09 06 00 fa aa bb cc dd ee 01
  05 0a 00 02 de ad`;
const V6_UNICAST = `0f 0c 00 0c 49 50 61 6c 6c 6f 63 61 74 69 6f 6e 09 06 00 fa aa bb cc dd ee 01
  09 06 00 fa aa bb cc dd ee 02 04 0a 00 01 01`;

const stream = (...items: [GobType, GobInput][]): Uint8Array => encodeStream(items);
const expectRejected = (decode: (b: Uint8Array) => unknown, body: Uint8Array, msg?: RegExp) => {
  let caught: unknown;
  try {
    decode(body);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GossipEnvelopeError);
  if (msg) expect((caught as Error).message).toMatch(msg);
};

describe("gossip envelopes: vector V6", () => {
  it("tag 4 (topology, A, de ad) encodes and decodes byte for byte", () => {
    const body = encodeGossip({ channel: "topology", src: A, payload: hex("de ad") });
    expect(toHex(body)).toBe(toHex(hex(V6_GOSSIP)));
    expect(decodeGossip(hex(V6_GOSSIP))).toEqual({
      channel: "topology",
      src: A,
      payload: hex("de ad"),
    });
  });

  it("tag 5 (IPallocation, A -> B, 01) encodes and decodes byte for byte", () => {
    const body = encodeUnicast({ channel: "IPallocation", src: A, dst: B, payload: hex("01") });
    expect(toHex(body)).toBe(toHex(hex(V6_UNICAST)));
    expect(decodeUnicast(hex(V6_UNICAST))).toEqual({
      channel: "IPallocation",
      src: A,
      dst: B,
      payload: hex("01"),
    });
  });

  it("tag 6 has the layout of tag 4, src being the original broadcaster", () => {
    const body = encodeBroadcast({ channel: "topology", src: A, payload: hex("de ad") });
    expect(toHex(body)).toBe(toHex(hex(V6_GOSSIP)));
    expect(decodeBroadcast(body).src).toBe(A);
  });
});

describe("gossip envelopes: round trips", () => {
  const name = fc.integer({ min: 0, max: 2 ** 48 - 1 });
  const channel = fc.string({ maxLength: 20, unit: "grapheme-ascii" });
  const payload = fc.uint8Array({ maxLength: 300 });

  it("gossip and broadcast", () => {
    fc.assert(
      fc.property(channel, name, payload, (c, src, p) => {
        expect(decodeGossip(encodeGossip({ channel: c, src, payload: p }))).toEqual({
          channel: c,
          src,
          payload: p,
        });
        expect(decodeBroadcast(encodeBroadcast({ channel: c, src, payload: p }))).toEqual({
          channel: c,
          src,
          payload: p,
        });
      }),
    );
  });

  it("unicast", () => {
    fc.assert(
      fc.property(channel, name, name, payload, (c, src, dst, p) => {
        const env = { channel: c, src, dst, payload: p };
        expect(decodeUnicast(encodeUnicast(env))).toEqual(env);
      }),
    );
  });

  it("accepts a 64-byte channel name and non-ASCII names", () => {
    const c = "x".repeat(64);
    expect(decodeGossip(encodeGossip({ channel: c, src: 1, payload: hex("00") })).channel).toBe(c);
    const u = "kanäl";
    expect(decodeGossip(encodeGossip({ channel: u, src: 1, payload: hex("00") })).channel).toBe(u);
  });

  it("accepts an empty payload (sent as a zero-length []byte)", () => {
    const body = encodeGossip({ channel: "c", src: 5, payload: new Uint8Array(0) });
    expect(decodeGossip(body).payload).toEqual(new Uint8Array(0));
  });
});

describe("gossip envelopes: strict decoding", () => {
  const good: [GobType, GobInput][] = [
    [gobString, "topology"],
    [gobUint, A],
    [gobBytes, hex("de ad")],
  ];

  it("wants exactly the right number of values", () => {
    expectRejected(decodeGossip, new Uint8Array(0), /0 values/);
    expectRejected(decodeGossip, stream(good[0]!, good[1]!), /2 values, expected 3/);
    expectRejected(decodeGossip, stream(...good, [gobBytes, hex("00")]), /more than 3/);
    expectRejected(decodeUnicast, stream(...good), /3 values, expected 4/);
    expectRejected(decodeGossip, hex(V6_UNICAST), /more than 3/);
  });

  it("wants the right gob types, telling int from uint", () => {
    expectRejected(decodeGossip, stream(good[0]!, [gobInt, A], good[2]!), /type id 2.*uint/);
    expectRejected(decodeGossip, stream([gobBytes, hex("61")], good[1]!, good[2]!), /type id 5/);
    expectRejected(decodeGossip, stream(good[0]!, good[1]!, [gobString, "x"]), /type id 6/);
    expectRejected(
      decodeUnicast,
      stream(good[0]!, good[1]!, [gobInt, B], good[2]!),
      /value 2 has gob type id 2/,
    );
  });

  it("refuses type definitions", () => {
    const withMap = stream(...good.slice(0, 2), [gobMap(gobString, gobString), new Map()]);
    expectRejected(decodeGossip, withMap, /type definitions/);
    const withSlice = stream(good[0]!, good[1]!, [gobSlice(gobUint), [1n]]);
    expectRejected(decodeGossip, withSlice, /type definitions/);
  });

  it("bounds the channel name and the peer names", () => {
    const long = stream([gobString, "x".repeat(65)], good[1]!, good[2]!);
    expectRejected(decodeGossip, long, /65 bytes/);
    expectRejected(decodeGossip, stream(good[0]!, [gobUint, 2n ** 48n], good[2]!), /48 bits/);
    expectRejected(
      decodeUnicast,
      stream(good[0]!, good[1]!, [gobUint, 2n ** 64n - 1n], good[2]!),
      /destination peer name/,
    );
  });

  it("refuses a channel name that is not valid UTF-8", () => {
    // "topology" with its first byte replaced by 0xff
    const body = hex(V6_GOSSIP);
    body[4] = 0xff;
    expectRejected(decodeGossip, body, /UTF-8/);
  });

  it("refuses truncated and padded bodies", () => {
    const body = hex(V6_GOSSIP);
    for (let n = 1; n < body.length; n++) expectRejected(decodeGossip, body.subarray(0, n));
    expectRejected(decodeGossip, concat(body, hex("00")));
    expectRejected(decodeGossip, concat(body, hex("01 0c")));
  });

  it("bounds the payload at 10 MiB", () => {
    const big = new Uint8Array(MAX_GOSSIP_PAYLOAD_BYTES + 1);
    expect(() => encodeGossip({ channel: "c", src: 1, payload: big })).toThrow(GossipEnvelopeError);
    const body = stream([gobString, "c"], [gobUint, 1], [gobBytes, big]);
    expectRejected(decodeGossip, body, /payload is 10485761 bytes/);
    const max = big.subarray(0, MAX_GOSSIP_PAYLOAD_BYTES);
    expect(decodeGossip(encodeGossip({ channel: "c", src: 1, payload: max })).payload.length).toBe(
      MAX_GOSSIP_PAYLOAD_BYTES,
    );
  });

  it("refuses bad input on encoding", () => {
    const payload = hex("00");
    expect(() => encodeGossip({ channel: "x".repeat(65), src: 1, payload })).toThrow(
      GossipEnvelopeError,
    );
    expect(() => encodeGossip({ channel: "c", src: 2 ** 48, payload })).toThrow(/48 bits/);
    expect(() => encodeGossip({ channel: "c", src: -1, payload })).toThrow(/48 bits/);
    expect(() => encodeGossip({ channel: "c", src: 1.5, payload })).toThrow(/48 bits/);
    expect(() => encodeUnicast({ channel: "c", src: 1, dst: 2 ** 48, payload })).toThrow(
      /destination/,
    );
  });

  it("throws only GossipEnvelopeError on arbitrary input", () => {
    const decoders = [decodeGossip, decodeUnicast, decodeBroadcast];
    const valid = [hex(V6_GOSSIP), hex(V6_UNICAST)];
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 80 }),
      // valid envelopes with a few bytes changed
      fc
        .tuple(
          fc.constantFrom(...valid),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        )
        .map(([base, edits]) => {
          const b = base.slice();
          for (const [at, v] of edits) b[at % b.length] = v;
          return b;
        }),
    );
    fc.assert(
      fc.property(body, fc.constantFrom(...decoders), (b, decode) => {
        try {
          decode(b);
        } catch (err) {
          expect(err).toBeInstanceOf(GossipEnvelopeError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
