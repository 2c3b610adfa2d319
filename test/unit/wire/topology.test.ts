import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  GobDecoder,
  GobEncoder,
  GobError,
  type GobInput,
  gobBool,
  gobBytes,
  gobInt,
  gobSlice,
  gobString,
  gobStruct,
  gobUint,
} from "../../../src/wire/gob.js";
import {
  type ConnectionSummary,
  type PeerSummary,
  TopologyError,
  decodeTopology,
  encodeTopology,
  isSaneTcpAddr,
} from "../../../src/wire/topology.js";
import { V7_B_HEX, V7_HEX, hex, norm, toHex } from "../vectors.js";

// --- Vector V7 (weave-wire.md section 10; type ids 66, 67, 68 are that generator's)

const V7 = norm(V7_HEX);
const V7_B = norm(V7_B_HEX);

const A = 0xaabbccddee01;
const B = 0xaabbccddee02;

const peerA: PeerSummary = {
  name: A,
  nickname: "hostA",
  uid: 0x0102030405060708n,
  version: 3n,
  shortId: 0x123,
  hasShortId: true,
  connections: [{ name: B, remoteTcpAddr: "192.168.1.2:6783", outbound: true, established: true }],
};
const peerB: PeerSummary = {
  name: B,
  nickname: "hostB",
  uid: 42n,
  version: 1n,
  shortId: 0x456,
  hasShortId: true,
  connections: [],
};

function expectTopologyError(fn: () => unknown, message?: RegExp): TopologyError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TopologyError);
  if (message) expect((caught as Error).message).toMatch(message);
  return caught as TopologyError;
}

// Schemas for hand-made payloads (a sender with other type ids, field orders and extra fields).
const bytes6 = (name: number): Uint8Array =>
  hex(
    name
      .toString(16)
      .padStart(12, "0")
      .replace(/(..)(?!$)/g, "$1 "),
  );
const stdPeer = gobStruct("peerSummary", [
  ["NameByte", gobBytes],
  ["NickName", gobString],
  ["UID", gobUint],
  ["Version", gobUint],
  ["ShortID", gobUint],
  ["HasShortID", gobBool],
]);
const stdConn = gobStruct("connectionSummary", [
  ["NameByte", gobBytes],
  ["RemoteTCPAddr", gobString],
  ["Outbound", gobBool],
  ["Established", gobBool],
]);
const stdConns = gobSlice(stdConn);

function payload(items: [Parameters<GobEncoder["encode"]>[0], GobInput][], firstTypeId = 65) {
  const enc = new GobEncoder({ firstTypeId });
  for (const [type, value] of items) enc.encode(type, value);
  return enc.bytes();
}

describe("topology payload: vector V7", () => {
  it("encodes peer A with one connection byte for byte", () => {
    expect(toHex(encodeTopology([peerA], { firstTypeId: 66 }))).toBe(V7);
    expect(hex(V7)).toHaveLength(278);
  });

  it("decodes peer A with one connection", () => {
    expect(decodeTopology(hex(V7))).toEqual([peerA]);
  });

  it("encodes and decodes peer B alone (empty connection list still sent)", () => {
    expect(toHex(encodeTopology([peerB], { firstTypeId: 66 }))).toBe(V7_B);
    expect(decodeTopology(hex(V7_B))).toEqual([peerB]);
  });

  it("uses ids from 65 by default, and defines the types once per message", () => {
    const bytes = encodeTopology([peerA, peerB]);
    expect(toHex(bytes.subarray(0, 3))).toBe("62 ff 81"); // definition of id 65
    expect(decodeTopology(bytes)).toEqual([peerA, peerB]);
    const dec = new GobDecoder(bytes);
    expect([...dec]).toHaveLength(4);
    expect([...dec.definitions.values()].map((d) => [d.id, d.kind, d.name])).toEqual([
      [65, "struct", "peerSummary"],
      [67, "slice", ""],
      [66, "struct", "connectionSummary"],
    ]);
  });

  it("empty payload ⇔ no peers", () => {
    expect(encodeTopology([])).toHaveLength(0);
    expect(decodeTopology(new Uint8Array(0))).toEqual([]);
  });
});

describe("topology payload: decoding like Go (fields by name)", () => {
  it("accepts other type ids, field order, and unknown fields", () => {
    const oddPeer = gobStruct("peerSummaryV9", [
      ["Extra", gobInt],
      ["HasShortID", gobBool],
      ["Version", gobUint],
      ["NameByte", gobBytes],
      ["Future", gobSlice(gobString)],
      ["ShortID", gobUint],
      ["UID", gobUint],
      ["NickName", gobString],
    ]);
    const oddConn = gobStruct("conn", [
      ["Established", gobBool],
      ["Weight", gobUint],
      ["RemoteTCPAddr", gobString],
      ["NameByte", gobBytes],
      ["Outbound", gobBool],
    ]);
    const bytes = payload(
      [
        [
          oddPeer,
          {
            Extra: -5n,
            HasShortID: true,
            Version: 3n,
            NameByte: bytes6(A),
            Future: ["x"],
            ShortID: 0x123,
            UID: 0x0102030405060708n,
            NickName: "hostA",
          },
        ],
        [
          gobSlice(oddConn),
          [
            {
              Established: true,
              Weight: 7,
              RemoteTCPAddr: "192.168.1.2:6783",
              NameByte: bytes6(B),
              Outbound: true,
            },
          ],
        ],
      ],
      200,
    );
    expect(decodeTopology(bytes)).toEqual([peerA]);
  });

  it("applies gob zero defaults to omitted fields", () => {
    const bytes = payload([
      [stdPeer, { NameByte: bytes6(B) }],
      [stdConns, [{ NameByte: bytes6(A) }]],
    ]);
    expect(decodeTopology(bytes)).toEqual([
      {
        name: B,
        nickname: "",
        uid: 0n,
        version: 0n,
        shortId: 0,
        hasShortId: false,
        connections: [{ name: A, remoteTcpAddr: "", outbound: false, established: false }],
      },
    ]);
  });

  it("round-trips several peers with IPv6 addresses", () => {
    const peers: PeerSummary[] = [
      peerA,
      {
        ...peerB,
        connections: [
          { name: A, remoteTcpAddr: "[fe80::1%eth0]:6783", outbound: false, established: true },
          { name: 7, remoteTcpAddr: "[::1]:1", outbound: true, established: false },
        ],
      },
      {
        name: 0,
        nickname: "zero",
        uid: 2n ** 64n - 1n,
        version: 2n ** 64n - 1n,
        shortId: 4095,
        hasShortId: false,
        connections: [],
      },
    ];
    expect(decodeTopology(encodeTopology(peers))).toEqual(peers);
  });
});

describe("topology payload: validation", () => {
  const conn = (c: Partial<Record<string, GobInput>>) => ({
    NameByte: bytes6(A),
    RemoteTCPAddr: "10.0.0.1:6783",
    ...c,
  });
  const withConn = (c: Partial<Record<string, GobInput>>): Uint8Array =>
    payload([
      [stdPeer, { NameByte: bytes6(B), UID: 1 }],
      [stdConns, [conn(c)]],
    ]);

  it("rejects a NameByte that is not 6 bytes", () => {
    expectTopologyError(
      () =>
        decodeTopology(
          payload([
            [stdPeer, { NameByte: hex("01 02 03 04 05") }],
            [stdConns, []],
          ]),
        ),
      /NameByte has 5 bytes/,
    );
    expectTopologyError(
      () =>
        decodeTopology(
          payload([
            [stdPeer, { UID: 3 }],
            [stdConns, []],
          ]),
        ),
      /NameByte has 0 bytes/,
    );
    expectTopologyError(
      () => decodeTopology(withConn({ NameByte: hex("01 02 03 04 05 06 07") })),
      /connection 0: NameByte has 7 bytes/,
    );
  });

  it("rejects a short id of 4096 or more", () => {
    const bytes = payload([
      [stdPeer, { NameByte: bytes6(B), ShortID: 4096, HasShortID: true }],
      [stdConns, []],
    ]);
    expectTopologyError(() => decodeTopology(bytes), /ShortID 4096/);
  });

  it.each([
    ["10.0.0.1:6783", true],
    ["255.255.255.255:65535", true],
    ["[::1]:6783", true],
    ["[fe80::1%eth0]:6783", true],
    ["10.0.0.1:65536", false],
    ["10.0.0.1", false],
    ["10.0.0.256:6783", false],
    ["host.example:6783", false],
    ["::1:6783", false],
    ["[10.0.0.1]:6783", false],
    ["10.0.0.1:67a3", false],
    [" 10.0.0.1:6783", false],
    ["10.0.0.1:6783\n", false],
    [`[fe80::1%${"x".repeat(60)}]:1`, false],
  ])("RemoteTCPAddr %j sane: %s", (addr, ok) => {
    expect(isSaneTcpAddr(addr)).toBe(ok);
    if (ok) {
      expect(
        decodeTopology(withConn({ RemoteTCPAddr: addr }))[0]!.connections[0]!.remoteTcpAddr,
      ).toBe(addr);
    } else {
      expectTopologyError(() => decodeTopology(withConn({ RemoteTCPAddr: addr })), /RemoteTCPAddr/);
    }
  });

  it("enforces the peer and connection limits", () => {
    const three = encodeTopology([peerA, peerB, { ...peerB, name: 9 }]);
    expect(decodeTopology(three, { maxPeers: 3 })).toHaveLength(3);
    expectTopologyError(() => decodeTopology(three, { maxPeers: 2 }), /more than 2 peer/);

    const conns: ConnectionSummary[] = Array.from({ length: 5 }, (_, i) => ({
      name: i,
      remoteTcpAddr: "",
      outbound: false,
      established: false,
    }));
    const many = encodeTopology([{ ...peerB, connections: conns }]);
    expect(decodeTopology(many, { maxConnectionsPerPeer: 5 })[0]!.connections).toHaveLength(5);
    expectTopologyError(
      () => decodeTopology(many, { maxConnectionsPerPeer: 4 }),
      // Refused on the list's count, before its entries are decoded.
      /slice of 5 elements, more than 4/,
    );
  });

  it("rejects a summary without its connection list", () => {
    expectTopologyError(
      () => decodeTopology(payload([[stdPeer, { NameByte: bytes6(B) }]])),
      /has no connection list/,
    );
  });

  it("rejects values of the wrong shape, wrapping the GobError", () => {
    const err = expectTopologyError(
      () =>
        decodeTopology(
          payload([
            [gobString, "not a peer"],
            [stdConns, []],
          ]),
        ),
      /expected struct, got string/,
    );
    expect(err.cause).toBeInstanceOf(GobError);

    const nameAsString = gobStruct("peerSummary", [["NameByte", gobString]]);
    expectTopologyError(
      () =>
        decodeTopology(
          payload([
            [nameAsString, { NameByte: "aa:bb:cc:dd:ee:01" }],
            [stdConns, []],
          ]),
        ),
      /field NameByte: expected \[\]byte/,
    );
    expectTopologyError(
      () =>
        decodeTopology(
          payload([
            [stdPeer, { NameByte: bytes6(B) }],
            [gobSlice(gobString), ["x"]],
          ]),
        ),
      /connection 0: expected struct/,
    );
    const negative = gobStruct("peerSummary", [
      ["NameByte", gobBytes],
      ["Version", gobInt],
    ]);
    expectTopologyError(
      () =>
        decodeTopology(
          payload([
            [negative, { NameByte: bytes6(B), Version: -1n }],
            [stdConns, []],
          ]),
        ),
      /Version: expected uint/,
    );
  });

  it("wraps gob-level corruption", () => {
    const truncated = hex(V7).subarray(0, 200);
    expect(expectTopologyError(() => decodeTopology(truncated)).cause).toBeInstanceOf(GobError);
  });

  it("refuses to encode out-of-range fields", () => {
    expectTopologyError(() => encodeTopology([{ ...peerB, shortId: 4096 }]), /short id 4096/);
    expectTopologyError(() => encodeTopology([{ ...peerB, uid: -1n }]), /UID -1/);
    expectTopologyError(() => encodeTopology([{ ...peerB, version: 2n ** 64n }]), /Version/);
    expectTopologyError(() => encodeTopology([{ ...peerB, name: 2 ** 48 }]), /48-bit/);
  });
});

// --- Properties

const arbAddr = fc.oneof(
  fc.constant(""),
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 65535 })).map(([ip, port]) => `${ip}:${port}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 65535 })).map(([ip, port]) => `[${ip}]:${port}`),
);
const arbName = fc.integer({ min: 0, max: 2 ** 48 - 1 });
const arbConn: fc.Arbitrary<ConnectionSummary> = fc.record({
  name: arbName,
  remoteTcpAddr: arbAddr.filter((a) => a.length <= 64),
  outbound: fc.boolean(),
  established: fc.boolean(),
});
const arbPeer: fc.Arbitrary<PeerSummary> = fc.record({
  name: arbName,
  nickname: fc.string({ maxLength: 20 }),
  uid: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  version: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  shortId: fc.integer({ min: 0, max: 4095 }),
  hasShortId: fc.boolean(),
  connections: fc.array(arbConn, { maxLength: 4 }),
});

function onlyTopologyErrors(bytes: Uint8Array): void {
  try {
    decodeTopology(bytes, { maxPeers: 16, maxConnectionsPerPeer: 16 });
  } catch (err) {
    if (!(err instanceof TopologyError)) throw err;
  }
}

describe("topology payload: properties", () => {
  it("encode then decode is the identity", () => {
    fc.assert(
      fc.property(fc.array(arbPeer, { maxLength: 5 }), (peers) => {
        expect(decodeTopology(encodeTopology(peers))).toEqual(peers);
      }),
    );
  });

  it("arbitrary bytes only ever throw TopologyError", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), onlyTopologyErrors), {
      numRuns: 2000,
    });
  });

  it("mutated valid payloads only ever throw TopologyError", () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.nat(255) }),
      fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), value: fc.nat(255) }),
      fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), value: fc.nat(255) }),
    );
    fc.assert(
      fc.property(
        fc.array(arbPeer, { minLength: 1, maxLength: 3 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        (peers, mutations) => {
          const bytes = [...encodeTopology(peers)];
          for (const m of mutations) {
            const at = m.at % (bytes.length + 1);
            if (m.kind === "set" && at < bytes.length) bytes[at] = m.value;
            if (m.kind === "insert") bytes.splice(at, 0, m.value);
            if (m.kind === "delete") bytes.splice(at, 1);
          }
          onlyTopologyErrors(Uint8Array.from(bytes));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
