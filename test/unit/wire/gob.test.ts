import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  GobDecoder,
  GobEncoder,
  GobError,
  type GobInput,
  type GobStruct,
  type GobType,
  type GobValue,
  decodeStream,
  encodeStream,
  expectBytes,
  expectSlice,
  expectString,
  expectStringMap,
  expectStruct,
  expectUint,
  fieldBool,
  fieldBytes,
  fieldSlice,
  fieldString,
  fieldUint,
  gobArray,
  gobBool,
  gobBytes,
  gobFloat,
  gobInt,
  gobMap,
  gobSlice,
  gobString,
  gobStruct,
  gobUint,
} from "../../../src/wire/gob.js";
import { concat, hex, norm, toHex, V7_B_HEX, V7_HEX } from "../vectors.js";
import { V20_HEX } from "../ipam/ipam-vectors.js";

// --- Vectors (weave-wire.md section 10, weave-wire-vectors.txt) ---

const V4 = norm(`0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00 1b ff 82 00 01 04 4e 61 6d 65 11
  61 61 3a 62 62 3a 63 63 3a 64 64 3a 65 65 3a 30 31`);
const V4_EMPTY = norm("0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00 04 ff 82 00 00");
const V6_GOSSIP = norm(`0b 0c 00 08 74 6f 70 6f 6c 6f 67 79 09 06 00 fa aa bb cc dd ee 01
  05 0a 00 02 de ad`);
const V6_UNICAST =
  norm(`0f 0c 00 0c 49 50 61 6c 6c 6f 63 61 74 69 6f 6e 09 06 00 fa aa bb cc dd ee 01
  09 06 00 fa aa bb cc dd ee 02 04 0a 00 01 01`);

const V7 = norm(V7_HEX);
const V7_B = norm(V7_B_HEX);

const V20 = norm(V20_HEX);

const V23D = norm(`25 ff 81 03 01 01 05 52 61 6e 67 65 01 ff 82 00 01 02 01 05 53 74 61 72 74 01 06
  00 01 03 45 6e 64 01 06 00 00 00 0f ff 82 01 fc c6 12 82 00 01 fc c6 12 83 00 00`);

// --- Schemas, defined here as a caller would (spec 2.5.1, 8.3) ---

const peerSummary = gobStruct("peerSummary", [
  ["NameByte", gobBytes],
  ["NickName", gobString],
  ["UID", gobUint],
  ["Version", gobUint],
  ["ShortID", gobUint],
  ["HasShortID", gobBool],
]);
const connectionSummary = gobStruct("connectionSummary", [
  ["NameByte", gobBytes],
  ["RemoteTCPAddr", gobString],
  ["Outbound", gobBool],
  ["Established", gobBool],
]);
const connectionSummaries = gobSlice(connectionSummary);

const nodeId = gobStruct("", [
  ["Name", gobUint],
  ["UID", gobUint],
]);
const proposalId = gobStruct("ProposalID", [
  ["Round", gobUint],
  ["Proposer", nodeId],
]);
const paxosValue = gobSlice(gobUint, "Value");
const acceptedValue = gobStruct("AcceptedValue", [
  ["Value", paxosValue],
  ["Origin", proposalId],
]);
const nodeClaims = gobStruct("", [
  ["Promise", proposalId],
  ["Accepted", proposalId],
  ["AcceptedVal", acceptedValue],
]);
const entry = gobStruct("", [
  ["Token", gobUint],
  ["Peer", gobUint],
  ["Version", gobUint],
  ["Free", gobUint],
]);
const ring = gobStruct("Ring", [
  ["Start", gobUint],
  ["End", gobUint],
  ["Peer", gobUint],
  ["Entries", gobSlice(entry, "entries")],
  ["Seeds", gobSlice(gobUint, "[]mesh.PeerName")],
]);
const gossipState = gobStruct("gossipState", [
  ["Now", gobInt],
  ["Nicknames", gobMap(gobUint, gobString, "map[mesh.PeerName]string")],
  ["Paxos", gobMap(nodeId, nodeClaims, "GossipState")],
  ["Ring", ring],
]);
const range = gobStruct("Range", [
  ["Start", gobUint],
  ["End", gobUint],
]);

const featuresMap = gobMap(gobString, gobString);
const nameA = hex("aa bb cc dd ee 01");
const nameB = hex("aa bb cc dd ee 02");
const peerA = {
  NameByte: nameA,
  NickName: "hostA",
  UID: 0x0102030405060708n,
  Version: 3n,
  ShortID: 0x123n,
  HasShortID: true,
};
const connAB = {
  NameByte: nameB,
  RemoteTCPAddr: "192.168.1.2:6783",
  Outbound: true,
  Established: true,
};
const peerB = {
  NameByte: nameB,
  NickName: "hostB",
  UID: 42n,
  Version: 1n,
  ShortID: 0x456n,
  HasShortID: true,
};

function topologyPayload(peers: readonly [GobInput, readonly GobInput[]][]): Uint8Array {
  const enc = new GobEncoder({ firstTypeId: 66 }); // this generator's ids (section 10, V7)
  for (const [summary, connections] of peers) {
    enc.encode(peerSummary, summary).encode(connectionSummaries, connections);
  }
  return enc.bytes();
}

function expectGobError(fn: () => unknown, message: RegExp): GobError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GobError);
  expect((caught as GobError).message).toMatch(message);
  return caught as GobError;
}

describe("gob vectors", () => {
  it("V4: features map encodes and decodes", () => {
    const enc = encodeStream([[featuresMap, new Map([["Name", "aa:bb:cc:dd:ee:01"]])]]);
    expect(toHex(enc)).toBe(V4);
    expect(enc.length).toBe(43);
    expect(toHex(encodeStream([[featuresMap, new Map()]]))).toBe(V4_EMPTY);

    const [features] = decodeStream(hex(V4));
    expect(expectStringMap(features)).toEqual(new Map([["Name", "aa:bb:cc:dd:ee:01"]]));
    expect(decodeStream(hex(V4_EMPTY))).toEqual([new Map()]);
  });

  it("V5: the unencrypted V2 stream frames V4 and a heartbeat", () => {
    const features = encodeStream([[featuresMap, new Map([["Name", "aa:bb:cc:dd:ee:01"]])]]);
    const plain = concat(
      hex("77 65 61 76 65 01 02 00 00 00 00 2b"),
      features,
      hex("00 00 00 01 00"),
    );
    expect(toHex(plain)).toBe(norm(`77 65 61 76 65 01 02 00 00 00 00 2b ${V4} 00 00 00 01 00`));
  });

  it("V6: gossip and unicast envelopes", () => {
    const gossip = encodeStream([
      [gobString, "topology"],
      [gobUint, 0xaabbccddee01n],
      [gobBytes, hex("de ad")],
    ]);
    expect(toHex(gossip)).toBe(V6_GOSSIP);
    const unicast = encodeStream([
      [gobString, "IPallocation"],
      [gobUint, 0xaabbccddee01n],
      [gobUint, 0xaabbccddee02n],
      [gobBytes, hex("01")],
    ]);
    expect(toHex(unicast)).toBe(V6_UNICAST);

    expect(decodeStream(hex(V6_GOSSIP))).toEqual(["topology", 0xaabbccddee01n, hex("de ad")]);
    const [channel, src, dst, payload] = decodeStream(hex(V6_UNICAST));
    expect(expectString(channel)).toBe("IPallocation");
    expect(expectUint(src)).toBe(0xaabbccddee01n);
    expect(expectUint(dst)).toBe(0xaabbccddee02n);
    expect(expectBytes(payload)).toEqual(hex("01"));
  });

  it("V7: topology payload for peer A with one connection", () => {
    expect(toHex(topologyPayload([[peerA, [connAB]]]))).toBe(V7);

    const values = decodeStream(hex(V7));
    expect(values).toEqual([peerA, [connAB]]);
    const summary = expectStruct(values[0]);
    expect(fieldBytes(summary, "NameByte")).toEqual(nameA);
    expect(fieldUint(summary, "UID")).toBe(0x0102030405060708n);
    const [conn] = expectSlice(values[1]).map((c) => expectStruct(c));
    expect(fieldString(conn!, "RemoteTCPAddr")).toBe("192.168.1.2:6783");
    expect(fieldBool(conn!, "Established")).toBe(true);
  });

  it("V7: peer B alone (no connections)", () => {
    expect(toHex(topologyPayload([[peerB, []]]))).toBe(V7_B);
    expect(decodeStream(hex(V7_B))).toEqual([peerB, []]);
  });

  it("V7: type ids and definition order follow Go", () => {
    const dec = new GobDecoder(hex(V7));
    expect([...dec]).toHaveLength(2);
    const defs = [...dec.definitions.values()];
    // The slice (68) is defined before its element struct (67): Go sends a type, then its parts.
    expect(defs.map((d) => [d.id, d.kind, d.name])).toEqual([
      [66, "struct", "peerSummary"],
      [68, "slice", ""],
      [67, "struct", "connectionSummary"],
    ]);
  });

  it("zero-valued fields are omitted and default on decode", () => {
    const sparse = { NameByte: nameB, NickName: "", UID: 0n, Version: 0, HasShortID: false };
    const [decoded] = decodeStream(encodeStream([[peerSummary, sparse]]));
    const s = expectStruct(decoded);
    expect(Object.keys(s)).toEqual(["NameByte"]);
    expect(fieldString(s, "NickName")).toBe("");
    expect(fieldUint(s, "Version")).toBe(0n);
    expect(fieldBool(s, "HasShortID")).toBe(false);
    expect(fieldSlice(s, "Missing")).toEqual([]);
  });

  it("V20: IPAM gossip state (nested structs, maps, ints; ids and order as in Go)", () => {
    const A = 0x7a0000000001n;
    const B = 0x7a0000000002n;
    const state = {
      Now: 1700000000,
      Nicknames: new Map([
        [A, "hostA"],
        [B, "hostB"],
      ]),
      Ring: {
        Start: 0xc6128000,
        End: 0xc612c000,
        Peer: A,
        Entries: [
          { Token: 0xc6128000, Peer: A, Version: 0, Free: 0x2000 },
          { Token: 0xc612a000, Peer: B, Free: 0x2000 },
        ],
        Seeds: [A, B],
      },
    };
    const bytes = encodeStream([[gossipState, state]]);
    expect(toHex(bytes)).toBe(V20);

    const [decoded] = decodeStream(hex(V20));
    const s = expectStruct(decoded);
    expect(s["Now"]).toBe(1700000000n);
    expect(s["Nicknames"]).toEqual(state.Nicknames);
    expect("Paxos" in s).toBe(false);
    const r = expectStruct(s["Ring"]);
    expect(fieldUint(r, "Start")).toBe(0xc6128000n);
    expect(fieldSlice(r, "Entries").map((e) => fieldUint(expectStruct(e), "Version"))).toEqual([
      0n,
      0n,
    ]);
    expect(fieldSlice(r, "Seeds")).toEqual([A, B]);
  });

  it("V23d: Range as the first type", () => {
    const bytes = encodeStream([[range, { Start: 0xc6128200, End: 0xc6128300 }]]);
    expect(toHex(bytes)).toBe(V23D);
    expect(decodeStream(hex(V23D))).toEqual([{ Start: 0xc6128200n, End: 0xc6128300n }]);
  });
});

describe("gob numbers", () => {
  const single = (type: GobType, value: GobInput): string => {
    const b = encodeStream([[type, value]]);
    return toHex(b.subarray(3)); // skip length, id and the singleton 00
  };

  it("encodes uints, ints and floats as in the spec", () => {
    expect(single(gobUint, 0)).toBe("00");
    expect(single(gobUint, 127)).toBe("7f");
    expect(single(gobUint, 128)).toBe("ff 80");
    expect(single(gobUint, 0x123)).toBe("fe 01 23");
    expect(single(gobUint, 2n ** 64n - 1n)).toBe("f8 ff ff ff ff ff ff ff ff");
    expect(single(gobInt, 1700000000)).toBe("fc ca a7 e2 00");
    expect(single(gobInt, -1)).toBe("01");
    expect(single(gobInt, -(2n ** 63n))).toBe("f8 ff ff ff ff ff ff ff ff");
    expect(single(gobFloat, 17)).toBe("fe 31 40");
    expect(single(gobFloat, 1)).toBe("fe f0 3f");
    expect(single(gobBool, true)).toBe("01");
  });

  it("decodes floats (byte-reversed IEEE 754)", () => {
    expect(decodeStream(hex("05 08 00 fe 31 40"))).toEqual([17]);
    expect(decodeStream(encodeStream([[gobFloat, -0.1]]))).toEqual([-0.1]);
    expect(decodeStream(encodeStream([[gobFloat, -0]]))).toEqual([-0]);
  });

  it("accepts non-minimal uint encodings, like Go", () => {
    expect(decodeStream(hex("04 06 00 ff 05"))).toEqual([5n]);
  });
});

describe("gob decoder checks", () => {
  it("rejects a value of an undefined type", () => {
    expectGobError(() => decodeStream(hex("03 ff 82 00")), /value of undefined type id 65/);
  });

  it("rejects a reference to a type that is never defined", () => {
    // 65 = slice of 66; no definition of 66.
    expectGobError(
      () => decodeStream(hex("0d ff 81 02 01 02 ff 82 00 01 ff 84 00 00  04 ff 82 00 00")),
      /type id 65 refers to undefined type id 66/,
    );
  });

  it("resolves forward references", () => {
    // 65 = slice of 66, then 66 = map[string]string, then a value of 65.
    const bytes = hex(`0d ff 81 02 01 02 ff 82 00 01 ff 84 00 00
      0e ff 83 04 01 02 ff 84 00 01 0c 01 0c 00 00
      09 ff 82 00 01 01 01 61 01 62`);
    expect(decodeStream(bytes)).toEqual([[new Map([["a", "b"]])]]);
  });

  it("rejects a redefinition, and definitions of predefined ids", () => {
    const def = "0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00";
    expectGobError(() => decodeStream(hex(`${def} ${def}`)), /type id 65 defined twice/);
    expectGobError(() => decodeStream(hex("0c 0b 04 01 02 0a 00 01 0c 01 0c 00 00")), /predefined/);
  });

  it("rejects malformed definitions", () => {
    expectGobError(() => decodeStream(hex("07 ff 81 02 02 06 00 00")), /has no CommonType/);
    expectGobError(
      () => decodeStream(hex("0c ff 81 02 01 02 ff 82 00 01 06 00 01")),
      /wireType sets more than one kind/,
    );
    expectGobError(() => decodeStream(hex("03 ff 81 00")), /definition of type id 65 is empty/);
    expectGobError(
      () => decodeStream(hex("04 ff 81 08 00")),
      /wireType field delta 8 is too large/,
    );
  });

  it("decodes values of types with their own marshaller as bytes", () => {
    // 65 = GobEncoderT{CommonType{Id 65}}, then a value of 65.
    expect(decodeStream(hex("0a ff 81 05 01 02 ff 82 00 00 00  06 ff 82 00 02 ab cd"))).toEqual([
      hex("ab cd"),
    ]);
  });

  it("rejects a definition whose CommonType id differs", () => {
    expectGobError(
      () => decodeStream(hex("0e ff 81 04 01 02 ff 84 00 01 0c 01 0c 00 00")),
      /type id 65 carries id 66/,
    );
  });

  it("rejects lengths beyond the input before allocating", () => {
    const err = expectGobError(
      () => decodeStream(hex("ff 10 00")),
      /message length 16 is too large/,
    );
    expect(err.offset).toBe(0);
    expectGobError(
      () => decodeStream(hex("07 0c 00 fc 7f ff ff ff")),
      /string length 2147483647 is too large \(only 0 bytes left/,
    );
    expectGobError(
      () => decodeStream(hex("07 0a 00 f8 ff ff ff ff ff")),
      /truncated \[\]byte length/,
    );
    expectGobError(() => decodeStream(hex("01 0c")), /expected singleton field delta, found end/);
    // A length that fits the input but not its message (the string's bytes lie in the next one).
    expectGobError(
      () => decodeStream(hex("03 0c 00 03 61 62 63")),
      /string length 3 is too large \(only 0 bytes left in message\)/,
    );
    expectGobError(() => decodeStream(hex("0c 0c")), /message length 12 is too large/);
  });

  it("rejects malformed numbers and framing", () => {
    expectGobError(() => decodeStream(hex("03 06 00 80")), /length byte 0x80/);
    expectGobError(() => decodeStream(hex("00")), /empty message/);
    expectGobError(() => decodeStream(hex("02 00 00")), /type id 0 is not valid/);
    expectGobError(() => decodeStream(hex("03 0c 01 00")), /must start with 00/);
    expectGobError(
      () => decodeStream(hex("04 0c 00 00 00")),
      /1 unexpected bytes at end of message/,
    );
    expectGobError(() => decodeStream(hex("03 0e 00 00")), /complex are not supported/);
  });

  it("rejects struct field numbers out of range", () => {
    // 65 = struct S {A bool}; value with delta 2.
    const def = "15 ff 81 03 01 01 01 53 01 ff 82 00 01 01 01 01 41 01 02 00 00 00";
    expect(decodeStream(hex(`${def} 05 ff 82 01 01 00`))).toEqual([{ A: true }]);
    expectGobError(
      () => decodeStream(hex(`${def} 05 ff 82 02 01 00`)),
      /field delta 2 is too large/,
    );
    expectGobError(
      () => decodeStream(hex(`${def} 04 ff 82 01 01`)),
      /expected struct S field delta/,
    );
  });

  it("caps nesting depth", () => {
    let type: GobType = gobUint;
    let value: GobInput = 1;
    for (let i = 0; i < 150; i++) {
      type = gobSlice(type);
      value = [value];
    }
    const bytes = encodeStream([[type, value]]);
    expectGobError(() => decodeStream(bytes), /nested deeper than 100/);
    expect(decodeStream(bytes, { maxDepth: 200 })).toHaveLength(1);
  });

  it("caps the number of type definitions", () => {
    const many = gobStruct(
      "Many",
      Array.from(
        { length: 600 },
        (_, i) => [`F${i}`, gobStruct(`T${i}`, [["X", gobBool]])] as const,
      ),
    );
    const bytes = encodeStream([[many, {}]]);
    expectGobError(() => decodeStream(bytes), /more than 512 type definitions/);
    expect(decodeStream(bytes, { maxTypes: 601 })).toHaveLength(1);
  });

  it("keeps the first error", () => {
    const dec = new GobDecoder(hex(`${V6_GOSSIP} 03 ff 82 00`));
    expect(dec.read()).toBe("topology");
    expect(dec.read()).toBe(0xaabbccddee01n);
    expect(dec.read()).toEqual(hex("de ad"));
    const err = expectGobError(() => dec.read(), /undefined type id 65/);
    expect(() => dec.read()).toThrow(err);
  });

  it("a stream of definitions only has no values", () => {
    expect(decodeStream(hex("0e ff 81 04 01 02 ff 82 00 01 0c 01 0c 00 00"))).toEqual([]);
    expect(decodeStream(new Uint8Array(0))).toEqual([]);
  });

  it("keeps strange field names as plain data", () => {
    const s = gobStruct("S", [
      ["__proto__", gobString],
      ["constructor", gobUint],
    ]);
    const [v] = decodeStream(encodeStream([[s, { ["__proto__"]: "x", constructor: 1 }]]));
    expect(Object.keys(expectStruct(v))).toEqual(["__proto__", "constructor"]);
    expect(fieldString(expectStruct(v), "__proto__")).toBe("x");
  });
});

describe("gob accessors and encoder checks", () => {
  it("accessors reject wrong shapes", () => {
    expectGobError(() => expectString(1n, "channel"), /channel: expected string, got integer/);
    expectGobError(() => expectUint(-1n), /expected uint/);
    expectGobError(() => expectStruct(new Map()), /expected struct, got map/);
    expectGobError(() => expectStringMap(new Map([[1n, "x"]])), /key: expected string/);
    expectGobError(() => fieldUint({ UID: "x" } as GobStruct, "UID"), /field UID: expected uint/);
  });

  it("rejects values that do not fit the schema, leaving the stream untouched", () => {
    const enc = new GobEncoder();
    enc.encode(gobString, "ok");
    const before = toHex(enc.bytes());
    expectGobError(() => enc.encode(gobUint, -1), /expected uint64/);
    expectGobError(() => enc.encode(gobUint, 2n ** 64n), /expected uint64/);
    expectGobError(() => enc.encode(gobUint, 1.5), /expected uint64/);
    expectGobError(() => enc.encode(gobInt, 2n ** 63n), /expected int64/);
    expectGobError(() => enc.encode(gobBytes, "x"), /expected \[\]byte/);
    expectGobError(() => enc.encode(peerSummary, { Nick: "x" }), /has no field Nick/);
    expectGobError(() => enc.encode(peerSummary, { UID: "1" }), /peerSummary.UID: expected uint64/);
    expectGobError(
      () => enc.encode(connectionSummaries, [{ Outbound: 1 }]),
      /value\[0\]\.Outbound: expected bool/,
    );
    expectGobError(() => enc.encode(gobArray(gobBool, 2), [true]), /array of 2 elements/);
    expect(toHex(enc.bytes())).toBe(before);
  });

  it("rejects bad schemas", () => {
    expectGobError(
      () =>
        gobStruct("S", [
          ["A", gobBool],
          ["A", gobUint],
        ]),
      /two fields named A/,
    );
    expectGobError(() => gobArray(gobBool, -1), /non-negative/);
    expectGobError(() => new GobEncoder({ firstTypeId: 10 }), /firstTypeId/);
  });

  it("repeats definitions per encoder, not per value", () => {
    const enc = new GobEncoder();
    enc.encode(featuresMap, new Map()).encode(featuresMap, new Map());
    expect(toHex(enc.bytes())).toBe(`${V4_EMPTY} 04 ff 82 00 00`);
    expect(enc.typeId(featuresMap)).toBe(65);
    expect(enc.typeId(gobString)).toBe(6);
  });

  it("encodes arrays and recursive struct types", () => {
    const tree = {
      kind: "struct",
      name: "Tree",
      fields: [] as { name: string; type: GobType }[],
    } as const;
    tree.fields.push({ name: "V", type: gobUint }, { name: "Kids", type: gobSlice(tree) });
    const value = { V: 1, Kids: [{ V: 2 }, { V: 3, Kids: [{}] }] };
    const [decoded] = decodeStream(encodeStream([[tree, value]]));
    expect(decoded).toEqual({ V: 1n, Kids: [{ V: 2n }, { V: 3n, Kids: [{}] }] });

    const arr = gobArray(gobString, 2);
    expect(decodeStream(encodeStream([[arr, ["a", ""]]]))).toEqual([["a", ""]]);
  });
});

// --- Property tests ---

const MAX_U64 = 2n ** 64n - 1n;
const basicTypes: GobType[] = [gobBool, gobInt, gobUint, gobFloat, gobBytes, gobString];
const keyTypes: GobType[] = [gobBool, gobInt, gobUint, gobString];

function arbType(depth: number): fc.Arbitrary<GobType> {
  const basic = fc.constantFrom(...basicTypes);
  if (depth === 0) return basic;
  const inner = arbType(depth - 1);
  return fc.oneof(
    { arbitrary: basic, weight: 3 },
    { arbitrary: inner.map((e) => gobSlice(e)), weight: 1 },
    {
      arbitrary: fc.tuple(inner, fc.integer({ min: 0, max: 3 })).map(([e, n]) => gobArray(e, n)),
      weight: 1,
    },
    {
      arbitrary: fc.tuple(fc.constantFrom(...keyTypes), inner).map(([k, e]) => gobMap(k, e)),
      weight: 1,
    },
    {
      arbitrary: fc.array(inner, { maxLength: 4 }).map((fs) =>
        gobStruct(
          "S",
          fs.map((t, i) => [`F${i}`, t] as const),
        ),
      ),
      weight: 2,
    },
  );
}

function arbValue(type: GobType): fc.Arbitrary<GobInput> {
  switch (type.kind) {
    case "bool":
      return fc.boolean();
    case "int":
      return fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.integer());
    case "uint":
      return fc.oneof(fc.bigInt({ min: 0n, max: MAX_U64 }), fc.nat(), fc.constant(0));
    case "float":
      return fc.double();
    case "bytes":
      return fc.uint8Array({ maxLength: 20 });
    case "string":
      return fc.string({ unit: "binary", maxLength: 20 });
    case "slice":
      return fc.array(arbValue(type.elem), { maxLength: 3 });
    case "array":
      return fc.array(arbValue(type.elem), { minLength: type.length, maxLength: type.length });
    case "map":
      return fc
        .uniqueArray(fc.tuple(arbValue(type.key), arbValue(type.elem)), {
          maxLength: 3,
          selector: ([k]) => (typeof k === "number" ? BigInt(k) : k),
        })
        .map((entries) => new Map(entries));
    case "struct":
      return fc
        .tuple(...type.fields.map((f) => fc.option(arbValue(f.type), { nil: undefined })))
        .map((values) => Object.fromEntries(type.fields.map((f, i) => [f.name, values[i]])));
  }
}

/** What a Go decoder would see: ints as bigint, zero struct fields gone. */
function expected(type: GobType, value: GobInput): GobValue {
  switch (type.kind) {
    case "int":
    case "uint":
      return BigInt(value as number | bigint);
    case "slice":
    case "array":
      return (value as readonly GobInput[]).map((e) => expected(type.elem, e));
    case "map":
      return new Map(
        [...(value as ReadonlyMap<GobInput, GobInput>)].map(([k, v]) => [
          expected(type.key, k),
          expected(type.elem, v),
        ]),
      );
    case "struct": {
      const out: GobStruct = {};
      for (const f of type.fields) {
        const v = (value as Record<string, GobInput | undefined>)[f.name];
        if (v === undefined || isZero(f.type, v)) continue;
        out[f.name] = expected(f.type, v);
      }
      return out;
    }
    default:
      return value as GobValue;
  }
}

function isZero(type: GobType, v: GobInput): boolean {
  switch (type.kind) {
    case "bool":
      return v === false;
    case "int":
    case "uint":
    case "float":
      return v === 0 || v === 0n;
    case "string":
      return v === "";
    case "bytes":
    case "slice":
      return (v as Uint8Array | readonly GobInput[]).length === 0;
    default:
      return false;
  }
}

const arbItem = arbType(3).chain((t) =>
  fc.array(arbValue(t), { minLength: 1, maxLength: 3 }).map((vs) => vs.map((v) => [t, v] as const)),
);
const arbItems = fc.array(arbItem, { maxLength: 4 }).map((groups) => groups.flat());

const arbConnection = fc.record(
  {
    NameByte: fc.uint8Array({ minLength: 6, maxLength: 6 }),
    RemoteTCPAddr: fc.string({ maxLength: 21 }),
    Outbound: fc.boolean(),
    Established: fc.boolean(),
  },
  { requiredKeys: [] },
);

describe("gob properties", () => {
  it("round-trips maps, strings, uints, ints and bytes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ unit: "binary" }), fc.string({ unit: "binary" }))),
        fc.string({ unit: "binary" }),
        fc.bigInt({ min: 0n, max: MAX_U64 }),
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        fc.uint8Array({ maxLength: 300 }),
        (entries, s, u, i, bytes) => {
          const map = new Map(entries);
          const stream = encodeStream([
            [featuresMap, map],
            [gobString, s],
            [gobUint, u],
            [gobInt, i],
            [gobBytes, bytes],
          ]);
          const [m, ...rest] = decodeStream(stream);
          expect(expectStringMap(m)).toEqual(map);
          expect(rest).toEqual([s, u, i, bytes]);
        },
      ),
    );
  });

  it("round-trips struct lists", () => {
    fc.assert(
      fc.property(fc.array(arbConnection, { maxLength: 10 }), (conns) => {
        const [decoded] = decodeStream(encodeStream([[connectionSummaries, conns]]));
        expect(decoded).toEqual(conns.map((c) => expected(connectionSummary, c)));
      }),
    );
  });

  it("round-trips arbitrary nested types", () => {
    fc.assert(
      fc.property(arbItems, (items) => {
        const decoded = decodeStream(encodeStream(items));
        expect(decoded).toEqual(items.map(([t, v]) => expected(t, v)));
      }),
      { numRuns: 300 },
    );
  });

  const samples: Uint8Array[] = [
    hex(V4),
    hex(V6_UNICAST),
    hex(V7),
    hex(V20),
    encodeStream([
      [gobArray(gobFloat, 2), [1.5, -2]],
      [gobMap(gobInt, gobSlice(gobString)), new Map([[-3n, ["x"]]])],
    ]),
  ];

  /** Decoding must end quickly, either with values or with a GobError. */
  function decodeSafely(bytes: Uint8Array): void {
    const start = performance.now();
    try {
      decodeStream(bytes);
    } catch (err) {
      if (!(err instanceof GobError)) throw err;
    }
    expect(performance.now() - start).toBeLessThan(500);
  }

  it("random bytes only ever produce GobError", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), decodeSafely), { numRuns: 5000 });
  });

  it("mutated valid streams only ever produce GobError", () => {
    const mutation = (s: Uint8Array): fc.Arbitrary<Uint8Array> =>
      fc.oneof(
        fc.nat(s.length).map((n) => s.slice(0, n)),
        fc.tuple(fc.nat(s.length - 1), fc.nat(7)).map(([i, bit]) => {
          const out = s.slice();
          out[i]! ^= 1 << bit;
          return out;
        }),
        fc.tuple(fc.nat(s.length - 1), fc.nat(255)).map(([i, b]) => {
          const out = s.slice();
          out[i] = b;
          return out;
        }),
        fc
          .tuple(fc.nat(s.length), fc.uint8Array({ minLength: 1, maxLength: 4 }))
          .map(([i, ins]) => concat(s.subarray(0, i), ins, s.subarray(i))),
        fc
          .tuple(fc.nat(s.length - 1), fc.integer({ min: 1, max: 8 }))
          .map(([i, n]) => concat(s.subarray(0, i), s.subarray(i + n))),
      );
    const mutated = fc
      .constantFrom(...samples)
      .chain((s) => mutation(s))
      .chain((s) => (s.length > 0 ? fc.oneof(fc.constant(s), mutation(s)) : fc.constant(s)));
    fc.assert(fc.property(mutated, decodeSafely), { numRuns: 10000 });
  });

  it("mutated random streams only ever produce GobError", () => {
    const arb = arbItems
      .map((items) => encodeStream(items))
      .filter((s) => s.length > 0)
      .chain((s) =>
        fc.tuple(fc.nat(s.length - 1), fc.nat(255), fc.nat(s.length)).map(([i, b, cut]) => {
          const out = s.slice(0, Math.max(cut, i + 1));
          out[i] = b;
          return out;
        }),
      );
    fc.assert(fc.property(arb, decodeSafely), { numRuns: 2000 });
  });
});

describe("GobDecoder maxItems", () => {
  it("refuses a slice or map longer than the limit on its count", () => {
    const encoder = new GobEncoder();
    encoder.encode(gobSlice(gobUint), [1n, 2n, 3n]);
    encoder.encode(
      gobMap(gobString, gobUint),
      new Map([
        ["a", 1n],
        ["b", 2n],
        ["c", 3n],
      ]),
    );
    const bytes = encoder.bytes();
    expect(decodeStream(bytes, { maxItems: 3 })).toHaveLength(2);
    expectGobError(() => decodeStream(bytes, { maxItems: 2 }), /slice of 3 elements, more than 2/);
  });
});
